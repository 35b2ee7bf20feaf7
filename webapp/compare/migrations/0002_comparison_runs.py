"""Comparisons run on the run lifecycle: each column's sampling is an eval run.

Existing comparisons keep their samples; each of their columns gets an eval run that
records how the old job ended (status, times, error, the engine's figures), so their
pages read the same afterwards."""

import django.db.models.deletion
from django.db import migrations, models

JOB_FIELDS = ("celery_task_id", "done", "error", "finished_at", "results", "started_at", "status",
              "stop_requested", "total")


def runs_for_existing(apps, schema_editor):
    Comparison = apps.get_model("compare", "Comparison")
    Run = apps.get_model("runs", "Run")
    for comparison in Comparison.objects.prefetch_related("entries__checkpoint__run"):
        for entry in comparison.entries.all():
            figures = (comparison.results or {}).get(str(entry.checkpoint_id), {})
            checkpoint = entry.checkpoint
            entry.run = Run.objects.create(
                project_id=comparison.project_id, stage="eval", launched_by_id=comparison.created_by_id,
                name=f"{comparison.name} · {checkpoint.run.name} @ {checkpoint.step}"[:200],
                config=_config(comparison, checkpoint), **_ending(comparison),
                started_at=comparison.started_at, finished_at=comparison.finished_at,
                base_checkpoint_id=checkpoint.pk, current_step=comparison.num_prompts if figures else 0,
                total_steps=comparison.num_prompts,
                summary={f"eval/{name}": value for name, value in figures.items()})
            entry.save(update_fields=["run"])


def _ending(comparison):
    """A job that had not ended has no task any more: its runs are cancelled, to resume."""
    if comparison.status in ("succeeded", "failed", "cancelled"):
        return {"status": comparison.status, "error": comparison.error}
    return {"status": "cancelled", "error": "Interrupted by an upgrade of Ponder: resume the run to finish it."}


def _config(comparison, checkpoint):
    source = ({"task": comparison.task} if comparison.task
              else {"task": None, "dataset": f"dataset:{comparison.dataset_id}"})
    return {"model": f"checkpoint:{checkpoint.pk}", **source, "split": comparison.split,
            "num_prompts": comparison.num_prompts, "k": comparison.k, "temperature": comparison.temperature,
            "top_p": comparison.top_p, "max_new_tokens": comparison.max_new_tokens, "rewards": comparison.rewards,
            "accuracy_reward": comparison.accuracy_reward, "seed": comparison.seed, "prompts_per_batch": 8}


class Migration(migrations.Migration):

    dependencies = [
        ("compare", "0001_initial"),
        ("runs", "0004_alter_run_stage"),
    ]

    operations = [
        migrations.AddField(
            model_name="comparisonentry",
            name="run",
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                       related_name="comparison_entry", to="runs.run"),
        ),
        migrations.RunPython(runs_for_existing, migrations.RunPython.noop),
        *[migrations.RemoveField(model_name="comparison", name=name) for name in JOB_FIELDS],
    ]
