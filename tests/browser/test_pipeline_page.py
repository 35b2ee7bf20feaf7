"""A pipeline whose first stage failed, in the browser: the later stages read blocked, their
pages stay put (no reload loop on the live feed), and the pipeline resumes from the page."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.runs import pipelines, services
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_blocked_stage_reads_blocked_and_the_pipeline_resumes_from_the_page(page, personas, live_url,
                                                                               artifacts_dir):
    pipeline = pipelines.pipeline_create(project=personas.project, user=personas.owner, name="recipe",
                                         stages=pipelines.R1_RECIPE[:3])
    first, second, _ = pipeline.runs.order_by("pipeline_index")
    Run.objects.filter(pk=first.pk).update(status="running", celery_task_id="t")
    services.run_finish(run_id=first.pk, status="failed", error="CUDA out of memory")
    log_in(page, "alice", "alice-pass-123")
    page.goto(f"/runs/{second.pk}/")
    expect(page.locator("#run-status")).to_have_text("blocked")
    page.evaluate("window.stayed = true")
    page.wait_for_function("window.ponderSocket && window.ponderSocket.readyState === 1")
    page.wait_for_timeout(2000)  # the feed's first frame has come and gone
    assert page.evaluate("window.stayed") is True and page.locator("#run-status").text_content() == "blocked"
    expect(page.locator("#run-blocked")).to_contain_text(f"stage 1 ({first.name}, #{first.pk}) is failed")
    page.goto(f"/pipelines/{pipeline.pk}/")
    expect(page.locator("#pipeline-state")).to_have_text("blocked")
    expect(page.locator("#resume-pipeline")).to_contain_text("CUDA out of memory")
    page.screenshot(path=str(artifacts_dir / "pipeline-blocked.png"), full_page=True)
    page.click("#resume-pipeline-button")
    expect(page.locator("#pipeline-state")).to_have_text("running")
    expect(page.locator(f"[data-run='{second.pk}'] .stage-status")).to_have_text("waiting")
    services.run_cancel(run=Run.objects.get(pk=first.pk), user=personas.owner)  # no worker need take it
