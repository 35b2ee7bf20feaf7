"""Batched writes of rollouts and metric points: one transaction per call, idempotent.

Rollouts: the identities `(run, step, prompt_hash, sample_index)` already stored are
looked up first; the new rows get ids from the sequence and are COPYed straight into the
table (a savepoint guards against a concurrent writer of the same rows, which sends the
batch the slower way: COPY into a temporary table, then INSERT ... ON CONFLICT DO
NOTHING). So a batch sent twice is stored once, and only new rows are announced.
Metric points: a batch whose steps all come after the newest step stored for its names
(a trainer logging as it goes) is COPYed straight into the table, in a savepoint; any
other batch, or one that meets a stored point anyway, is deduplicated (last wins) and
upserted from arrays with one INSERT ... ON CONFLICT DO UPDATE, which costs ~1.7x per row.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from engine.text import split_reasoning
from webapp import broadcast
from webapp.runs.models import Run

try:  # about ten times faster than json.dumps on the small dicts of every row
    import orjson

    def _json_text(value: Any) -> str:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
except ImportError:  # pragma: no cover

    def _json_text(value: Any) -> str:
        return json.dumps(value)

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
# The step range keeps the index scan to the batch's own steps however big the run is.
_STORED = """
SELECT r.step, r.prompt_hash, r.sample_index FROM runs_rollout r
JOIN unnest(%s::bigint[], %s::bigint[], %s::integer[]) AS k(step, prompt_hash, sample_index)
  ON r.step = k.step AND r.prompt_hash = k.prompt_hash AND r.sample_index = k.sample_index
WHERE r.run_id = %s AND r.step BETWEEN %s AND %s
"""
_METRIC_COPY = "COPY runs_metricpoint (run_id, name, step, value, wall_time) FROM STDIN"
# The newest step stored for any of the batch's names (a backward index probe per name).
_LAST_STORED = """
SELECT max((SELECT max(step) FROM runs_metricpoint m WHERE m.run_id = %s AND m.name = n))
FROM unnest(%s::text[]) AS n
"""
_METRIC_UPSERT = """
INSERT INTO runs_metricpoint (run_id, name, step, value, wall_time)
SELECT %s, n, s, v, %s FROM unnest(%s::text[], %s::bigint[], %s::float8[]) AS t(n, s, v)
ON CONFLICT (run_id, name, step) DO UPDATE SET value = EXCLUDED.value, wall_time = EXCLUDED.wall_time
"""
_NEW_IDS = "SELECT nextval(pg_get_serial_sequence('runs_rollout', 'id')) FROM generate_series(1, %s)"
_COPY = f"COPY runs_rollout (id, {', '.join(_COLUMNS)}, created_at) FROM STDIN"

Identity = tuple[int, int, int]  # (step, prompt_hash, sample_index)


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
            _json_text(self.rewards), _json_text(self.metadata) if self.metadata else "{}", self.checkpoint_id,
        )


def _identity(row: tuple[Any, ...]) -> Identity:
    return row[1], row[3], row[2]


def rollouts_store(*, run: Run, rollouts: list[RolloutIn]) -> int:
    """Store rollouts once each, announce the new ones after commit; returns how many were new."""
    if not rollouts:
        return 0
    rows = [r.row(run.pk) for r in rollouts]
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        fresh = _fresh(cursor, run.pk, rows)
        created = _copy_new(cursor, rows, fresh, now) if fresh else []
        if created is None:  # someone stored some of these meanwhile
            created = _insert_via_temp(cursor, rows, now)
        broadcast.send_on_commit(run.pk, lambda: broadcast.rollout_frames(_announced(rollouts, rows, created)))
    return len(created)


def _fresh(cursor: Any, run_id: int, rows: list[tuple[Any, ...]]) -> list[int]:
    """Indices of the rows to insert: not stored yet, first of their identity in the batch."""
    keys = [_identity(row) for row in rows]
    steps = [k[0] for k in keys]
    cursor.execute(_STORED, [steps, [k[1] for k in keys], [k[2] for k in keys], run_id, min(steps), max(steps)])
    taken = set(cursor.fetchall())
    fresh = []
    for i, key in enumerate(keys):
        if key not in taken:
            taken.add(key)
            fresh.append(i)
    return fresh


def _copy_new(cursor: Any, rows: list[tuple[Any, ...]], fresh: list[int], now: datetime) -> list[tuple[int, int]] | None:
    """COPY the fresh rows with ids from the sequence: [(id, row index)], or None on a race."""
    cursor.execute(_NEW_IDS, [len(fresh)])
    ids = [pk for (pk,) in cursor.fetchall()]
    try:
        with transaction.atomic(), cursor.copy(_COPY) as copy:
            for pk, i in zip(ids, fresh, strict=True):
                copy.write_row((pk, *rows[i], now))
    except (IntegrityError, psycopg.errors.UniqueViolation):
        return None
    return list(zip(ids, fresh, strict=True))


def _insert_via_temp(cursor: Any, rows: list[tuple[Any, ...]], now: datetime) -> list[tuple[int, int]]:
    """The race-proof way: COPY into a temporary table, INSERT ... ON CONFLICT DO NOTHING."""
    cursor.execute(_CREATE_TEMP)
    with cursor.copy(f"COPY {_TEMP} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(_INSERT, [now])
    returned = cursor.fetchall()
    cursor.execute(f"TRUNCATE {_TEMP}")
    first: dict[Identity, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(_identity(row), i)
    return sorted((pk, first[(step, h, idx)]) for pk, step, h, idx in returned)


def _announced(rollouts: list[RolloutIn], rows: list[tuple[Any, ...]],
               created: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The stored rollouts as the live view gets them, in id order."""
    out = []
    for pk, i in created:
        row, source = rows[i], rollouts[i]
        out.append({
            "id": pk, "run_id": row[0], "step": row[1], "sample_index": row[2], "prompt": row[4],
            "completion": row[5], "reasoning": row[6], "final_answer": row[7], "token_count": row[9],
            "finish_reason": row[10], "reward": row[11], "rewards": source.rewards, "metadata": source.metadata,
            "checkpoint_id": row[14], "answer": row[8],
        })
    return out


def metrics_store(*, run: Run, points: list[tuple[int, str, float]]) -> int:
    """Upsert (step, name, value) points; a point re-sent for the same step overwrites (the
    last one in a batch wins, as in W&B). Returns how many distinct points were stored."""
    if not points:
        return 0
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        # What the per-row foreign key check did, once per batch: the run exists and
        # cannot be deleted under us until we commit.
        cursor.execute("SELECT 1 FROM runs_run WHERE id = %s FOR KEY SHARE", [run.pk])
        if not cursor.fetchone():
            raise Run.DoesNotExist(f"run {run.pk} no longer exists")
        stored = _copy_points(cursor, run.pk, points, now) if _all_new(cursor, run.pk, points) else None
        if stored is None:
            stored = _upsert_points(cursor, run.pk, points, now)
        broadcast.send_on_commit(run.pk, lambda: broadcast.metric_frames(
            [{"step": s, "name": n, "value": v} for s, n, v in stored]))
    return len(stored)


def _all_new(cursor: Any, run_id: int, points: list[tuple[int, str, float]]) -> bool:
    """True when every step of the batch is past every step stored for its names: a
    trainer logging as it goes. One index probe per distinct name."""
    cursor.execute(_LAST_STORED, [run_id, list({name for _, name, _ in points})])
    (last,) = cursor.fetchone()
    return last is None or min(step for step, _, _ in points) > last


def _copy_points(cursor: Any, run_id: int, points: list[tuple[int, str, float]],
                 now: datetime) -> list[tuple[int, str, float]] | None:
    """COPY the points straight into the table; None when one is there already (stored
    meanwhile by another writer, or repeated within the batch)."""
    try:
        with transaction.atomic(), cursor.copy(_METRIC_COPY) as copy:
            for step, name, value in points:
                copy.write_row((run_id, name, step, value, now))
    except (IntegrityError, psycopg.errors.UniqueViolation):
        return None
    return points


def _upsert_points(cursor: Any, run_id: int, points: list[tuple[int, str, float]],
                   now: datetime) -> list[tuple[int, str, float]]:
    latest: dict[tuple[str, int], float] = {}
    for step, name, value in points:
        latest[(name, step)] = value
    rows = [(step, name, value) for (name, step), value in latest.items()]
    cursor.execute(_METRIC_UPSERT, [run_id, now, [r[1] for r in rows], [r[0] for r in rows], [r[2] for r in rows]])
    return rows
