"""Batched writes of rollouts and metric points: one transaction per call, idempotent.

Rollouts go through COPY into a temporary table, then one INSERT ... ON CONFLICT DO
NOTHING, so a batch sent twice is stored once and only new rows are announced.
Metric points are upserted from arrays with one statement.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from engine.text import split_reasoning
from webapp.runs import realtime
from webapp.runs.models import Run

_COLUMNS = (
    "run_id", "step", "sample_index", "prompt_hash", "prompt", "completion", "reasoning", "final_answer",
    "reference", "token_count", "finish_reason", "reward", "rewards", "metadata", "checkpoint_id",
)
_TEMP = "_ponder_rollout_in"
_CREATE_TEMP = f"""
CREATE TEMP TABLE IF NOT EXISTS {_TEMP} (
    run_id bigint, step bigint, sample_index integer, prompt_hash bigint, prompt text, completion text,
    reasoning text, final_answer text, reference text, token_count integer, finish_reason varchar(16),
    reward double precision, rewards jsonb, metadata jsonb, checkpoint_id bigint
) ON COMMIT DELETE ROWS
"""
_INSERT = f"""
INSERT INTO runs_rollout ({", ".join(_COLUMNS)}, created_at)
SELECT {", ".join(_COLUMNS)}, %s FROM {_TEMP}
ON CONFLICT (run_id, step, prompt_hash, sample_index) DO NOTHING
RETURNING id, step, prompt_hash, sample_index
"""


def prompt_hash(prompt: str) -> int:
    """A signed 64-bit digest of the prompt text (fits PostgreSQL bigint)."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class RolloutIn:
    """A rollout to store. `reference` is the API's `answer`."""

    step: int
    prompt: str
    completion: str
    rewards: dict[str, float]
    sample_index: int = 0
    reference: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    reward: float | None = None  # the total; the sum of `rewards` when not given
    reasoning: str | None = None
    final_answer: str | None = None
    token_count: int | None = None
    finish_reason: str = ""
    checkpoint_id: int | None = None

    def row(self, run_id: int) -> tuple[Any, ...]:
        reasoning, answer = self.reasoning, self.final_answer
        if reasoning is None or answer is None:
            reasoning, answer = split_reasoning(self.completion)
        total = self.reward if self.reward is not None else math.fsum(self.rewards.values())
        tokens = self.token_count if self.token_count is not None else len(self.completion.split())
        return (
            run_id, self.step, self.sample_index, prompt_hash(self.prompt), self.prompt, self.completion,
            reasoning, answer, self.reference, tokens, self.finish_reason[:16], total,
            json.dumps(self.rewards), json.dumps(self.metadata), self.checkpoint_id,
        )


def rollouts_store(*, run: Run, rollouts: list[RolloutIn]) -> int:
    """Store rollouts once each, announce the new ones after commit; returns how many were new."""
    if not rollouts:
        return 0
    rows = [r.row(run.pk) for r in rollouts]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CREATE_TEMP)
        with cursor.copy(f"COPY {_TEMP} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(_INSERT, [timezone.now()])
        created = cursor.fetchall()
        cursor.execute(f"TRUNCATE {_TEMP}")
        realtime.send_on_commit(run.pk, realtime.rollout_frames(_announced(rows, created)))
    return len(created)


def _announced(rows: list[tuple[Any, ...]], created: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    ids = {(step, h, idx): pk for pk, step, h, idx in created}
    out = []
    for row in rows:
        pk = ids.pop((row[1], row[3], row[2]), None)
        if pk is None:
            continue  # already stored by an earlier call, or a duplicate inside this one
        record = dict(zip(_COLUMNS, row, strict=True))
        record["rewards"] = json.loads(record["rewards"])
        record["metadata"] = json.loads(record["metadata"])
        record["answer"] = record.pop("reference")
        del record["prompt_hash"]
        out.append({"id": pk, **record})
    out.sort(key=lambda r: r["id"])
    return out


def metrics_store(*, run: Run, points: list[tuple[int, str, float]]) -> int:
    """Upsert (step, name, value) points; a point re-sent for the same step overwrites."""
    latest: dict[tuple[str, int], float] = {}
    for step, name, value in points:
        latest[(name, step)] = value  # last one wins, as in W&B
    if not latest:
        return 0
    names = [k[0] for k in latest]
    steps = [k[1] for k in latest]
    values = list(latest.values())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO runs_metricpoint (run_id, name, step, value, wall_time)
            SELECT %s, n, s, v, %s FROM unnest(%s::text[], %s::bigint[], %s::float8[]) AS t(n, s, v)
            ON CONFLICT (run_id, name, step) DO UPDATE SET value = EXCLUDED.value, wall_time = EXCLUDED.wall_time
            """,
            [run.pk, timezone.now(), names, steps, values],
        )
        frame_points = [{"step": s, "name": n, "value": v} for n, s, v in zip(names, steps, values, strict=True)]
        realtime.send_on_commit(run.pk, realtime.metric_frames(frame_points))
    return len(latest)
