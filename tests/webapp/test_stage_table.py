"""Adding a stage is one entry in `engine/stages.py` plus its module: a toy stage registered
here is a command of `python -m engine`, a launch form in the browser, and a run the
worker's code executes through the database sink."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse

from engine import stages
from engine.__main__ import main
from engine.config import StageConfigMixin, option, require
from engine.stages import StageSpec
from engine.training import StageResult
from webapp.runs.models import MetricPoint, Run
from webapp.runs.stages import queue_kind


@dataclass
class CountConfig(StageConfigMixin):
    """A toy stage that counts."""

    steps: int = option(3, "How far to count.")
    output_dir: str = option("var/runs/count", "Folder for the result.")

    def __post_init__(self) -> None:
        require(self.steps >= 1, f"steps must be at least 1, got {self.steps}.")


def run_count(config: CountConfig, sink: Any, resume_from: str | None = None) -> StageResult:
    for step in range(1, config.steps + 1):
        sink.metrics(step, {"count": float(step)})
        sink.progress(step, config.steps)
    return StageResult(status="succeeded", step=config.steps, checkpoint=None)


@pytest.fixture
def count_stage():
    stages.register(StageSpec("count", "Counting (toy)", CountConfig, run_count, queue="cpu"))
    yield stages.get("count")
    stages.unregister("count")


def test_a_name_taken_is_refused_and_unknown_names_are_listed(count_stage):
    with pytest.raises(ValueError, match="exists already"):
        stages.register(StageSpec("count", "again", CountConfig, run_count))
    with pytest.raises(KeyError, match="the stages are grpo, sft, rejection, distill, eval, pretrain, count"):
        stages.get("counting")
    with pytest.raises(ValueError, match="queue must be one of gpu, cpu"):
        StageSpec("x", "x", CountConfig, run_count, queue="tpu")


def test_the_command_line_runs_a_registered_stage(count_stage, tmp_path, capsys):
    config = tmp_path / "count.json"
    config.write_text(json.dumps({"steps": 4}))
    assert main(["count", "--config", str(config), "--output-dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "result.json").read_text())["step"] == 4
    assert main(["count", "--help-config"]) == 0
    assert "steps (int, default 3)" in capsys.readouterr().out
    config.write_text(json.dumps({"steps": 0}))
    assert main(["count", "--config", str(config)]) == 2
    assert "steps must be at least 1, got 0." in capsys.readouterr().err


@pytest.mark.django_db
def test_the_launch_form_shows_it_and_the_worker_runs_it(count_stage, client, personas, settings, tmp_path):
    from workers.execution import execute_run

    settings.PONDER_DATA_DIR = str(tmp_path)
    client.force_login(personas.owner)
    page = client.get(reverse("run-new") + "?stage=count").content.decode()
    assert 'data-stage="count"' in page and "Counting (toy)" in page and 'name="cfg_steps"' in page
    refused = client.post(reverse("run-new"), {"stage": "count", "project": "alpha", "name": "c", "cfg_steps": "0"})
    assert "steps must be at least 1, got 0." in refused.content.decode() and not Run.objects.exists()
    client.post(reverse("run-new"), {"stage": "count", "project": "alpha", "name": "count to 5", "cfg_steps": "5"})
    run = Run.objects.get(name="count to 5")
    assert (run.stage, run.stage_label, run.config) == ("count", "Counting (toy)", {"steps": 5})

    assert execute_run(run_id=run.pk, task_id=run.celery_task_id, worker="test-worker") == "succeeded"
    run.refresh_from_db()
    points = MetricPoint.objects.filter(run=run, name="count").order_by("step").values_list("step", "value")
    assert list(points) == [(s, float(s)) for s in range(1, 6)]
    assert (run.status, run.current_step, run.total_steps) == ("succeeded", 5, 5)
    assert queue_kind("count") == "cpu"  # its runs go to the queue its entry names
