"""Engine stages run by a real Celery worker, from the API to the database and back."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests import procs
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TINY_GRPO = {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0},
             "group_size": 4, "prompts_per_step": 2, "max_new_tokens": 24, "eval_examples": 4}


def settle_pipeline_comparison(pipeline, user, timeout: float = 120) -> object:
    """The comparison a finished pipeline gets (made by the worker), cancelled, and the worker
    idle again: a test must not end while the worker still writes (its teardown empties the
    tables, which would deadlock with it)."""
    from webapp.compare.models import Comparison
    from webapp.compare.services import comparison_cancel

    deadline = time.monotonic() + timeout
    while not Comparison.objects.filter(pipeline=pipeline).exists():
        assert time.monotonic() < deadline, "no comparison was made when the pipeline ended"
        time.sleep(0.3)
    comparison = Comparison.objects.get(pipeline=pipeline)
    comparison_cancel(user=user, comparison=comparison)
    while Run.objects.filter(status__in=["queued", "running"]).exclude(stage="external").exists():
        assert time.monotonic() < deadline, "the comparison's runs did not stop"
        time.sleep(0.3)
    return comparison


def wait_for(run: Run, statuses: set[str], timeout: float = 300) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run.pk} is {run.status}, not {statuses} after {timeout}s: {run.error[-2000:]}")


def private_queue(settings, server_env, queue: str) -> dict[str, str]:
    """Route runs to `queue` only, from this test and from the workers it starts (their
    requeues too); returns those workers' environment."""
    settings.PONDER_QUEUES = {"gpu": queue, "cpu": queue}
    return {**server_env, "PONDER_GPU_QUEUE": queue, "PONDER_CPU_QUEUE": queue}


def wait_for_checkpoint(run: Run, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not Checkpoint.objects.filter(run=run, step__gte=step).exists():
        assert time.monotonic() < deadline, f"no checkpoint at step {step} in time"
        time.sleep(0.2)


def test_a_run_queued_through_the_api_runs_in_a_real_worker(personas, api_for, starter_model, celery_worker):
    api = api_for(personas.owner)
    response = api.post("/api/v1/runs", {"name": "tiny r1-zero", "stage": "grpo", "project": "alpha",
                                         "config": {**TINY_GRPO, "steps": 2}})
    assert response.status_code == 201, response.content
    run = wait_for(Run.objects.get(pk=response.json()["id"]), {"succeeded", "failed"})
    assert run.status == "succeeded", run.error
    assert api.get(f"/api/v1/runs/{run.pk}").json()["status"] == "succeeded"
    assert Rollout.objects.filter(run=run).count() == 2 * 2 * 4
    assert set(Rollout.objects.filter(run=run).values_list("step", flat=True)) == {1, 2}
    names = set(MetricPoint.objects.filter(run=run).values_list("name", flat=True))
    assert {"reward/mean", "accuracy", "response_length/mean"} <= names
    checkpoint = Checkpoint.objects.filter(run=run).order_by("-step").first()
    assert checkpoint is not None and checkpoint.parameter_count > 0 and "layers" in checkpoint.summary["text"]
    assert run.current_step == 2 and run.total_steps == 2


def test_a_bad_config_is_refused_before_anything_is_queued(personas, api_for):
    response = api_for(personas.owner).post("/api/v1/runs", {"name": "x", "stage": "grpo", "project": "alpha",
                                                             "config": {**TINY_GRPO, "group_size": 1}})
    assert response.status_code == 422
    assert "group_size must be at least 2" in response.json()["detail"]
    assert not Run.objects.exists()


def test_a_worker_killed_mid_run_is_requeued_and_finishes_by_itself_without_gaps_or_duplicates(
        personas, api_for, server_env, artifacts_dir, settings, starter_model):
    name, queue = "killme", "killme-queue"
    env = private_queue(settings, server_env, queue)  # only these workers may take the run
    worker = procs.start_worker(env, artifacts_dir / "logs", name=name, queues=queue)
    api = api_for(personas.owner)
    config = {**TINY_GRPO, "steps": 6, "save_every": 1}
    run = Run.objects.get(pk=api.post("/api/v1/runs", {"name": "crash", "stage": "grpo", "project": "alpha",
                                                        "config": config}).json()["id"])
    wait_for_checkpoint(run, 2)
    os.killpg(worker.popen.pid, signal.SIGKILL)  # the whole worker, main process and child
    worker.stop()
    run.refresh_from_db()
    assert run.status == "running"  # nobody has noticed yet
    # Another worker, under another name (names carry the pid): its reaper sees the lease lapse.
    worker = procs.start_worker(env, artifacts_dir / "logs", name=f"{name}-2", queues=queue)
    try:
        wait_for(run, {"succeeded", "failed"}, timeout=300)
        assert run.status == "succeeded", run.error
        assert run.requeues == 1 and "requeued; it resumes from its last checkpoint" in (
            Path(server_env["PONDER_DATA_DIR"]) / "runs" / str(run.pk) / "log.txt").read_text()
    finally:
        worker.stop()
    steps = list(Rollout.objects.filter(run=run).values_list("step", flat=True))
    assert sorted(set(steps)) == list(range(1, 7))  # contiguous
    assert len(steps) == 6 * 2 * 4  # nothing duplicated, nothing missing
    per_step = {s: steps.count(s) for s in set(steps)}
    assert set(per_step.values()) == {8}


def assert_each_step_once(run: Run, steps: int) -> None:
    """Contiguous steps, one rollout per identity (2 prompts x 4 samples), each metric once."""
    rollouts = list(Rollout.objects.filter(run=run).values_list("step", flat=True))
    assert sorted(set(rollouts)) == list(range(1, steps + 1))
    assert {s: rollouts.count(s) for s in set(rollouts)} == {s: 8 for s in range(1, steps + 1)}
    rewards = list(MetricPoint.objects.filter(run=run, name="reward/mean").values_list("step", flat=True))
    assert sorted(rewards) == list(range(1, steps + 1))


def test_sigterm_hands_the_run_back_after_its_step_and_the_next_worker_finishes_it(
        personas, api_for, server_env, artifacts_dir, settings, starter_model):
    queue = "deploy-queue"
    env = private_queue(settings, server_env, queue)  # only these workers may take the run
    worker = procs.start_worker(env, artifacts_dir / "logs", name="deploy-1", queues=queue)
    run = Run.objects.get(pk=api_for(personas.owner).post("/api/v1/runs", {
        "name": "deploy", "stage": "grpo", "project": "alpha",
        "config": {**TINY_GRPO, "steps": 6, "save_every": 1}}).json()["id"])
    wait_for_checkpoint(run, 2)
    os.killpg(worker.popen.pid, signal.SIGTERM)  # as a deploy or Ctrl-C does: the whole process group
    assert worker.popen.wait(120) is not None  # it finishes its step first, then exits
    worker.stop()
    run.refresh_from_db()
    assert run.status == "queued" and run.requeues == 1  # handed back at once, not after a lease
    log = (Path(server_env["PONDER_DATA_DIR"]) / "runs" / str(run.pk) / "log.txt").read_text()
    handed = int(log.split("is stopping (SIGTERM or Ctrl-C) after step ")[1].split(":")[0])
    assert Checkpoint.objects.filter(run=run, step=handed).exists()  # the step's work was saved
    worker = procs.start_worker(env, artifacts_dir / "logs", name="deploy-2", queues=queue)
    try:
        assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
    finally:
        worker.stop()
    assert_each_step_once(run, 6)


def test_ctrl_c_of_make_serve_hands_the_run_back_after_its_step(
        personas, api_for, server_env, artifacts_dir, settings, starter_model):
    queue = "serve-queue"
    env = private_queue(settings, server_env, queue)  # only these workers may take the run
    serve = procs.Proc("serve", [str(procs.BIN / "python"), "manage.py", "serve", "--port", str(procs.free_port())],
                       env, artifacts_dir / "logs")
    try:
        run = Run.objects.get(pk=api_for(personas.owner).post("/api/v1/runs", {
            "name": "ctrl-c", "stage": "grpo", "project": "alpha",
            "config": {**TINY_GRPO, "steps": 40, "save_every": 1}}).json()["id"])
        wait_for_checkpoint(run, 2)
        os.killpg(serve.popen.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches every process
        assert serve.popen.wait(60) == 0
    finally:
        serve.stop()
    run.refresh_from_db()
    assert run.status == "queued" and run.requeues == 1, run.status  # to be continued by the next worker
    assert run.current_step >= 2 and Checkpoint.objects.filter(run=run, step=run.current_step).exists()


@pytest.mark.parametrize(("stage", "figure"), [("eval", "eval/pass@1"), ("rejection", "rejection/samples")])
def test_a_sampling_stage_stopped_half_way_resumes_from_its_results(stage, figure, personas, api_for, server_env,
                                                                     starter_model, celery_worker):
    api = api_for(personas.owner)
    config = {"model": "starter", "task": "arithmetic", "num_prompts": 40, "k": 2, "prompts_per_batch": 2,
              "max_new_tokens": 16}
    run = Run.objects.get(pk=api.post("/api/v1/runs", {"name": stage, "stage": stage, "project": "alpha",
                                                        "config": config}).json()["id"])
    deadline = time.monotonic() + 300
    while run.current_step < 6:
        assert time.monotonic() < deadline, "no progress in time"
        time.sleep(0.2)
        run.refresh_from_db()
    api.post(f"/api/v1/runs/{run.pk}/cancel")
    done_before = wait_for(run, {"cancelled", "succeeded"}).current_step
    assert run.status == "cancelled" and 6 <= done_before < 40
    kept = Rollout.objects.filter(run=run).count()
    assert kept == done_before * 2  # what it sampled stays
    changed = api.post(f"/api/v1/runs/{run.pk}/resume", {"config": {**config, "k": 4}})
    assert changed.status_code == 422 and "resume it unchanged" in changed.json()["detail"]  # its results need them
    assert api.post(f"/api/v1/runs/{run.pk}/resume").status_code == 200
    assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
    log = (Path(server_env["PONDER_DATA_DIR"]) / "runs" / str(run.pk) / "log.txt").read_text()
    assert f"{done_before} done before" in log  # carried on rather than starting again
    prompts = list(Rollout.objects.filter(run=run).values_list("prompt", "sample_index"))
    assert len(prompts) == 40 * 2 and len(set(prompts)) == 80  # each sample once
    assert run.summary[figure] >= 0


def test_database_connections_killed_mid_run_lose_nothing(personas, api_for, server_env, artifacts_dir, settings,
                                                           starter_model):
    from django.db import connection

    queue = "pgkill-queue"
    env = private_queue(settings, server_env, queue)  # only these workers may take the run
    # The worker's connections are named (libpq reads PGAPPNAME), so only they are killed: this
    # process's other threads keep theirs, as they would on a server where one worker's die.
    env["PGAPPNAME"] = "ponder-pgkill-worker"
    worker = procs.start_worker(env, artifacts_dir / "logs", name="pgkill", queues=queue)
    try:
        run = Run.objects.get(pk=api_for(personas.owner).post("/api/v1/runs", {
            "name": "pg kill", "stage": "grpo", "project": "alpha",
            "config": {**TINY_GRPO, "steps": 8, "save_every": 2}}).json()["id"])
        for at_step in (2, 5):  # twice in one run, as a PostgreSQL restart would
            deadline = time.monotonic() + 300
            while run.current_step < at_step:
                assert time.monotonic() < deadline, "no progress in time"
                time.sleep(0.2)
                run.refresh_from_db()
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND application_name = %s",
                               [env["PGAPPNAME"]])
                assert cursor.fetchone()[0] >= 1
        assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
    finally:
        worker.stop()
    assert run.requeues == 0  # the worker carried on: nothing was lost, nothing redone
    assert_each_step_once(run, 8)


def test_a_reasoning_gym_task_trains_and_evaluates_on_the_starter(personas, api_for, starter_model, celery_worker):
    api = api_for(personas.owner)
    task = {"task": "reasoning_gym:basic_arithmetic", "task_options": {"min_terms": 2, "max_terms": 2}}
    grpo = api.post("/api/v1/runs", {"name": "gym grpo", "stage": "grpo", "project": "alpha",
                                     "config": {**TINY_GRPO, **task, "steps": 1}})
    evaluation = api.post("/api/v1/runs", {"name": "gym eval", "stage": "eval", "project": "alpha",
                                           "config": {"model": "starter", **task, "num_prompts": 4, "k": 2,
                                                      "max_new_tokens": 16}})
    for response in (grpo, evaluation):
        assert response.status_code == 201, response.content
        run = wait_for(Run.objects.get(pk=response.json()["id"]), {"succeeded", "failed"})
        assert run.status == "succeeded", run.error
        rollouts = list(Rollout.objects.filter(run=run))
        assert rollouts and all(r.prompt.strip() and r.reference for r in rollouts)
        assert all(r.reference.lstrip("-").isdigit() for r in rollouts)  # the library's answers, as references
    assert run.summary["eval/pass@1"] >= 0 and "eval/cons@k" in run.summary


def test_grpo_on_plain_hugging_face_checkpoints_from_the_launch_form_and_the_api(
        personas, api_for, client, celery_worker, tmp_path, settings):
    """Random-init Llama (a chat template, LoRA) and Qwen2 (a base model, all weights)
    written with `save_pretrained` into a folder the operator allowed: one launched from the
    form, one through the API, both trained by the worker into stored rollouts and a
    checkpoint, each prompted the way its tokenizer asks."""
    from tests.engine.tiny_lm import CHAT_TEMPLATE, build_tiny_model

    settings.PONDER_MODEL_DIRS = [str(tmp_path)]
    llama = build_tiny_model(tmp_path / "llama-chat", arch="llama", chat_template=CHAT_TEMPLATE)
    qwen2 = build_tiny_model(tmp_path / "qwen2-base", arch="qwen2")
    tiny = {"task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}, "group_size": 4,
            "prompts_per_step": 2, "max_new_tokens": 8, "eval_examples": 0, "steps": 2, "learning_rate": 1e-3}
    client.force_login(personas.owner)
    form = {"stage": "grpo", "project": "alpha", "name": "llama lora", "cfg_model": str(llama),
            "cfg_lora_0": "on", "cfg_lora_1": "4", "cfg_lora_2": "8", "cfg_beta": "0.04",
            **{f"cfg_{k}": (json.dumps(v) if isinstance(v, dict) else v) for k, v in tiny.items()}}
    assert client.post("/runs/new/", form).status_code == 302
    response = api_for(personas.owner).post("/api/v1/runs", {"name": "qwen2 full", "stage": "grpo", "project": "alpha",
                                                             "config": {**tiny, "model": str(qwen2)}})
    assert response.status_code == 201, response.content
    for run, chat in ((Run.objects.get(name="llama lora"), True), (Run.objects.get(name="qwen2 full"), False)):
        run = wait_for(run, {"succeeded", "failed"})
        assert run.status == "succeeded", run.error
        rollouts = list(Rollout.objects.filter(run=run))
        assert len(rollouts) == 2 * 2 * 4
        assert all(r.prompt.startswith("<|system|>") and r.prompt.endswith("<|assistant|>") for r in rollouts) if chat \
            else all(r.prompt.startswith("A conversation") for r in rollouts)
        checkpoint = Checkpoint.objects.filter(run=run).order_by("-step").first()
        assert checkpoint is not None and checkpoint.step == 2
        assert (Path(checkpoint.path) / "adapter").is_dir() == chat  # the LoRA run saved its adapter
        names = set(MetricPoint.objects.filter(run=run).values_list("name", flat=True))
        assert ("kl" in names) == chat


def test_a_pipeline_that_ends_is_compared_stage_by_stage_by_the_worker(personas, starter_model, celery_worker):
    from webapp.runs import pipelines

    one_step = {**TINY_GRPO, "steps": 1, "eval_examples": 0}
    pipeline = pipelines.pipeline_create(project=personas.project, user=personas.owner, name="two stages", stages=[
        {"stage": "grpo", "name": "R1-Zero", "config": one_step},
        {"stage": "grpo", "name": "more RL", "config": {**one_step, "model": "@previous"}}])
    for run in pipeline.runs.order_by("pipeline_index"):
        assert wait_for(run, {"succeeded", "failed"}).status == "succeeded", run.error
    comparison = settle_pipeline_comparison(pipeline, personas.owner)  # its sampling is not what is tested here
    assert [e.checkpoint.run.name for e in comparison.entries.order_by("position")] == ["R1-Zero", "more RL"]
