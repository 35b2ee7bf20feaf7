"""The recipe's human step in the browser, with a real worker: R1-Zero runs, its pipeline
stops at the review gate, the annotator accepts, rewrites and rejects with the keyboard
alone, the owner releases the gate, and cold-start SFT trains on exactly what was accepted."""

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.webapp.test_stage_runs import settle_pipeline_comparison, wait_for
from webapp.review.models import ReviewQueue
from webapp.runs import pipelines
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REWRITE = "<think>Start with the first number and add the rest one by one.</think> <answer>7</answer>"
STAGES = [
    {"stage": "grpo", "name": "R1-Zero", "config": {**pipelines.R1_ZERO_DEMO, "steps": 4, "eval_examples": 0}},
    {"stage": "review", "name": "Cold-start data", "config": {"accept": 3, "limit": 8}},
    {"stage": "sft", "name": "Cold-start SFT", "config": {"model": "starter", "dataset": "@previous", "max_steps": 2}},
]


def test_the_gate_waits_for_people_and_the_next_stage_trains_on_what_they_accepted(
        page, browser, personas, starter_model, celery_worker, live_url, artifacts_dir):
    pipeline = pipelines.pipeline_create(project=personas.project, user=personas.owner, name="people", stages=STAGES)
    first, gate, sft = pipeline.runs.order_by("pipeline_index")
    assert wait_for(first, {"succeeded", "failed"}).status == "succeeded", first.error
    deadline = time.monotonic() + 60
    while not ReviewQueue.objects.filter(gate_run=gate).exists():  # a worker opens the gate
        assert time.monotonic() < deadline, Run.objects.get(pk=gate.pk).error
        time.sleep(0.3)
    queue = ReviewQueue.objects.get(gate_run=gate)
    items = list(queue.items.order_by("position").select_related("rollout"))

    log_in(page, "bob", "bob-pass-123")  # the annotator, keyboard only
    page.goto(f"/review/queues/{queue.pk}/label/")
    expect(page.locator("#pos")).to_have_text("1")
    page.keyboard.press("a")
    page.keyboard.press("e")
    expect(page.locator("#rewrite")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type(REWRITE)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#pos")).to_have_text("2")
    page.keyboard.press("r")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#pos")).to_have_text("3")
    page.keyboard.press("a")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#pos")).to_have_text("4")

    context, owner = browser.new_page(base_url=live_url, viewport={"width": 1400, "height": 900})
    try:
        log_in(owner, "alice", "alice-pass-123")
        owner.goto(f"/pipelines/{pipeline.pk}/")
        expect(owner.locator(f"#gate-{gate.pk}")).to_contain_text("waiting for review: 2 of 3 accepted")
        owner.screenshot(path=str(artifacts_dir / "pipeline-review-gate.png"), full_page=True)
        owner.click(f"#release-gate-{gate.pk}")
        expect(owner.locator(f"[data-run='{gate.pk}'] .stage-status")).to_have_text("succeeded")
    finally:
        context.close()
    sft = wait_for(Run.objects.get(pk=sft.pk), {"succeeded", "failed"})
    assert sft.status == "succeeded", sft.error
    gate.refresh_from_db()
    assert sft.input_dataset_id == gate.output_dataset_id
    trained_on = list(sft.input_dataset.prompts.order_by("index").values_list("completion", flat=True))
    assert trained_on == [REWRITE, items[2].rollout.completion]
    comparison = settle_pipeline_comparison(pipeline, personas.owner)  # the pipeline ended: compared end to end
    assert comparison.entries.count() == 2  # R1-Zero's checkpoint and the cold-started SFT's (the gate saves none)
