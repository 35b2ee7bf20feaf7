"""The owner archives a run from its page, brings it back, and deletes it after typing its name."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.runs.models import Rollout, Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_owner_archives_and_deletes_a_run(page, personas, artifacts_dir):
    run = Run.objects.create(project=personas.project, name="old sweep", stage="grpo", status="succeeded")
    Rollout.objects.create(run=run, step=1, prompt_hash=1, prompt="p", completion="c")
    log_in(page, "alice", "alice-pass-123")
    page.goto(f"/runs/{run.pk}/")
    page.click("#archive-run")
    expect(page.locator("#run-archived")).to_be_visible()
    page.goto("/runs/")
    expect(page.locator(f"a[href='/runs/{run.pk}/']")).to_have_count(0)
    page.goto(f"/runs/{run.pk}/")
    page.click("#delete-run")
    expect(page.locator("#plan-rollouts")).to_have_text("1")
    page.screenshot(path=str(artifacts_dir / "run-delete-confirm.png"), full_page=True)
    page.fill("#confirm-name", "old")
    page.click("#confirm-delete")
    expect(page.locator("#delete-error")).to_contain_text("type the run's name")
    page.fill("#confirm-name", "old sweep")
    page.click("#confirm-delete")
    page.wait_for_url("**/runs/")
    expect(page.locator("body")).to_contain_text("and everything that went with it are deleted")
    assert not Run.objects.filter(pk=run.pk).exists() and not Rollout.objects.exists()
