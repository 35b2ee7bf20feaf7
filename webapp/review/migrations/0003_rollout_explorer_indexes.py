"""Indexes on runs_rollout for the trace explorer's keyset pages.

Built CONCURRENTLY (no write lock on a table of millions of rows), so outside a
transaction. They live in the database only: the Rollout model does not list them,
because the runs app owns that model.

- (run, reward, id): "best" / "worst" pages in one index walk (rewards tie a lot: 0, 1, 2).
- (run, token_count, id): "longest" pages.
- (run, prompt_hash, step, sample_index): one prompt across training.
"""

from django.db import migrations

INDEXES = {
    "rollout_run_reward_id": "(run_id, reward, id)",
    "rollout_run_tokens_id": "(run_id, token_count, id)",
    "rollout_run_prompt_step": "(run_id, prompt_hash, step, sample_index)",
}


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("runs", "0001_initial"),
        ("review", "0002_reviewqueue_queueitem"),
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON runs_rollout {columns}",
            f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
        )
        for name, columns in INDEXES.items()
    ]
