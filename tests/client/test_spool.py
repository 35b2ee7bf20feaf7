"""The spool on its own (no server): order across segments, torn lines, acks, locking."""

from __future__ import annotations

import json

import pytest
from ponder_client import SpoolLockedError
from ponder_client.records import ROLLOUT, line, rollout_lines, split_line
from ponder_client.spool import Position, Spool, iter_records, segment_numbers


def payloads(directory, start=None):
    return [json.loads(split_line(r.raw)[1])["step"] for r in iter_records(directory, start or Position(0, 0))]


def test_lines_come_back_in_order_across_segments(tmp_path):
    spool = Spool(tmp_path, segment_bytes=100)
    for step in range(20):
        spool.append(line(ROLLOUT, {"step": step}))
    spool.close()
    assert len(segment_numbers(tmp_path)) > 3
    assert payloads(tmp_path) == list(range(20))


def test_an_ack_drops_finished_segments_and_a_new_writer_starts_a_new_one(tmp_path):
    spool = Spool(tmp_path, segment_bytes=100)
    for step in range(20):
        spool.append(line(ROLLOUT, {"step": step}))
    records = list(iter_records(tmp_path, Position(0, 0)))
    spool.ack(records[9].end)
    assert min(segment_numbers(tmp_path)) == records[9].end.segment
    assert spool.pending() == {"r": 10}
    spool.close()
    again = Spool(tmp_path, segment_bytes=100)
    assert again.first_live_segment == max(segment_numbers(tmp_path))
    assert payloads(tmp_path, again.acked) == list(range(10, 20))
    again.close()


def test_a_torn_last_line_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    spool.append(line(ROLLOUT, {"step": 1}))
    spool.close()
    with open(max(tmp_path.glob("seg-*.jsonl")), "ab") as f:
        f.write(b'{"k":"r","d":{"st')
    later = Spool(tmp_path)
    later.append(line(ROLLOUT, {"step": 2}))
    later.close()
    assert payloads(tmp_path) == [1, 2]


def test_two_live_writers_are_refused(tmp_path):
    first = Spool(tmp_path)
    with pytest.raises(SpoolLockedError, match="in use by another live process"):
        Spool(tmp_path)
    first.close()
    Spool(tmp_path).close()


def test_rollout_lines_carry_the_checked_rollout():
    (raw,) = rollout_lines([{"step": 3, "prompt": "p", "completion": "c", "rewards": {"r": 1}, "metadata": {"a": [1]}}])
    kind, payload = split_line(raw[:-1])
    assert kind == ROLLOUT
    assert json.loads(payload) == {"step": 3, "prompt": "p", "completion": "c", "rewards": {"r": 1.0},
                                   "sample_index": 0, "metadata": {"a": [1]}}
