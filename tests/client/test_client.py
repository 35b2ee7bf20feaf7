"""The client against the live server: a run logged end to end, and refusals surfaced
with the server's own detail (on the caller's thread, or from the background)."""

from __future__ import annotations

import json
import time

import pytest
from ponder_client import PonderAPIError, PonderValidationError, Run

from tests.client.conftest import FAST, rollout, stored_counts
from webapp.runs.models import Checkpoint, MetricPoint
from webapp.runs.models import Run as RunRow

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_is_logged_end_to_end(live_url, owner_token, personas, tmp_path):
    run = Run.create("trl elsewhere", project="alpha", config={"lr": 1e-6}, base_url=live_url, token=owner_token,
                     spool_dir=tmp_path, options=FAST)
    for step in range(1, 4):
        run.log_rollouts([rollout(step, i) for i in range(16)])
        run.log_metrics(step, {"reward/mean": step / 10, "kl": 0.01, "loss": float("nan")})
    run.log_checkpoint(3, "/ckpt/step-3", {"architecture": "Qwen2ForCausalLM", "parameters": 1000})
    report = run.finish(summary={"best": 0.3})

    assert report.ok, report
    assert (report.rollouts_sent, report.rollouts_created, report.metric_points_sent) == (48, 48, 6)
    assert report.metrics_dropped == 3 and report.checkpoints_sent == 1
    assert stored_counts(run.id) == (48, 48)
    row = RunRow.objects.get(pk=run.id)
    assert (row.stage, row.status, row.project.slug, row.config, row.summary) == (
        "external", "succeeded", "alpha", {"lr": 1e-6}, {"best": 0.3})
    assert MetricPoint.objects.filter(run_id=run.id, name="kl").count() == 3
    assert Checkpoint.objects.get(run_id=run.id).parameter_count == 1000
    assert not (tmp_path / run.spool_dir.relative_to(tmp_path)).exists()  # drained spools are removed


def test_logging_costs_the_caller_little(live_url, owner_token, personas, tmp_path):
    run = Run.create("fast", base_url=live_url, token=owner_token, spool_dir=tmp_path, options=FAST)
    text = "x" * 1000
    costs = []
    for i in range(500):
        started = time.perf_counter()
        run.log_rollouts([rollout(1, i, text=text)])
        costs.append(time.perf_counter() - started)
    assert run.finish().ok
    costs.sort()
    assert costs[len(costs) // 2] < 0.001, f"median {costs[len(costs) // 2] * 1e6:.0f} us per call"


def test_a_bad_rollout_is_refused_on_the_callers_thread(live_url, owner_token, personas, tmp_path):
    run = Run.create("strict", base_url=live_url, token=owner_token, spool_dir=tmp_path, options=FAST)
    cases = [
        ({"rewards": {"math": "high"}}, "rollouts[1].rewards.math: must be a number"),
        ({"rewards": {"math": float("nan")}}, "rollouts[1].rewards.math: must be a finite number"),
        ({"step": -1}, "rollouts[1].step: must be greater than or equal to 0"),
        ({"completion": "nul \x00"}, "rollouts[1].completion: must not contain NUL"),
        ({"surprise": 1}, "rollouts[1].surprise: Extra inputs are not permitted"),
    ]
    for bad, message in cases:
        with pytest.raises(PonderValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
            run.log_rollouts([rollout(1, 0), {**rollout(1, 1), **bad}])
    with pytest.raises(PonderValidationError, match=r"rollouts\[0\]\.completion: Field required"):
        run.log_rollouts([{"step": 1, "prompt": "p", "rewards": {}}])
    report = run.finish()
    assert report.rollouts_sent == 0 and stored_counts(run.id) == (0, 0)


def test_a_missing_sample_index_numbers_a_group(live_url, owner_token, personas, tmp_path):
    run = Run.create("group", base_url=live_url, token=owner_token, spool_dir=tmp_path, options=FAST)
    group = [{"step": 1, "prompt": "same", "completion": f"c{i}", "rewards": {"r": i}} for i in range(4)]
    run.log_rollouts(group)
    run.log_rollouts(group)  # the same call again: stored once
    assert run.finish().ok
    assert stored_counts(run.id) == (4, 4)


def test_the_servers_validation_detail_is_raised_by_create(live_url, owner_token, personas, tmp_path):
    with pytest.raises(PonderAPIError) as info:
        Run.create("", base_url=live_url, token=owner_token, spool_dir=tmp_path, options=FAST)
    assert info.value.status == 422 and info.value.detail.startswith("name:")
    with pytest.raises(PonderAPIError) as info:
        Run.create("x", project="no-such-project", base_url=live_url, token=owner_token, spool_dir=tmp_path)
    assert info.value.status == 404


def test_a_refusal_in_the_background_is_surfaced_with_the_servers_detail(live_url, owner_token, personas, tmp_path):
    options = FAST.__class__(**{**FAST.__dict__, "validate": False})
    run = Run.create("unchecked", base_url=live_url, token=owner_token, spool_dir=tmp_path, options=options)
    run.log_rollouts([rollout(1, 0), {**rollout(1, 1), "step": -1}, rollout(1, 2)])
    assert run.flush(30)
    with pytest.raises(PonderAPIError) as info:
        run.log_metrics(1, {"kl": 0.1})
    assert info.value.status == 422
    assert "rollouts[1].step: Input should be greater than or equal to 0" in info.value.detail
    report = run.finish()
    assert report.rejected == 1 and "rollouts[1].step" in report.errors[0] and not report.ok
    assert stored_counts(run.id) == (2, 2)  # the others went through
    kept = [json.loads(line) for line in (run.spool_dir / "rejected.jsonl").read_text().splitlines()]
    assert kept[0]["record"]["d"]["step"] == -1 and "greater than or equal to 0" in kept[0]["error"]


def test_a_teammate_who_may_not_write_hears_why(live_url, teammate_token, personas, tmp_path):
    row = RunRow.objects.create(project=personas.project, name="theirs", stage="external", status="running")
    run = Run.attach(row.pk, base_url=live_url, token=teammate_token, spool_dir=tmp_path, options=FAST)
    run.log_rollouts([rollout(1, 0)])
    report = run.finish()
    assert report.rejected == 2  # the rollout and the finish
    assert "403" in report.errors[0] and "only project owners may write to this run" in report.errors[0]
    assert RunRow.objects.get(pk=row.pk).status == "running"
