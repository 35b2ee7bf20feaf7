"""Three people in one flow: the owner makes a project and a teammate its annotator, the
annotator labels with the keyboard, an outsider sees nothing, the owner archives and deletes."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.review.models import Label
from webapp.runs.models import Rollout, Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_annotator_and_outsider(page, browser, personas, live_url, artifacts_dir):
    log_in(page, "alice", "alice-pass-123")
    page.goto("/projects/new/")
    page.fill("#project-form input[name=name]", "Gamma")
    page.click("#create-project")
    page.wait_for_url("**/projects/gamma/")
    page.goto("/projects/gamma/members/")
    page.fill("#member-add input[name=who]", "bob")
    page.select_option("#member-add select[name=role]", "annotator")
    page.click("#add-member")
    expect(page.locator("[data-member=bob] select[name=role]")).to_have_value("annotator")

    from webapp.projects.models import Project

    run = Run.objects.create(project=Project.objects.get(slug="gamma"), name="gamma grpo", stage="grpo",
                             status="succeeded", current_step=1, launched_by=personas.owner)
    for i in range(3):
        Rollout.objects.create(run=run, step=1, sample_index=i, prompt_hash=5, prompt="2+2?",
                               completion=f"<think>step {i}</think> <answer>4</answer>", rewards={"math": 1.0})
    page.goto(f"/runs/{run.pk}/explore/")
    page.fill("#queue-form input[name=name]", "gamma review")
    page.check("#queue-form input[name=assignees][value=bob]")
    page.click("#make-queue")
    queue_url = page.url

    context, bob = browser.new_page(base_url=live_url, viewport={"width": 1200, "height": 900})
    try:
        log_in(bob, "bob", "bob-pass-123")
        bob.goto(queue_url)
        bob.click("#start-labelling")
        expect(bob.locator("#pos")).to_have_text("1")
        bob.keyboard.press("a")
        bob.keyboard.press("Control+Enter")
        expect(bob.locator("#pos")).to_have_text("2")
    finally:
        context.close()
    assert Label.objects.filter(user=personas.teammate, verdict="accept").count() == 1

    context, charlie = browser.new_page(base_url=live_url)
    try:
        log_in(charlie, "charlie", "charlie-pass-123")
        for path in ("/projects/gamma/", f"/runs/{run.pk}/", f"/runs/{run.pk}/explore/", queue_url):
            assert charlie.goto(path).status == 404, path
        charlie.goto("/runs/")
        expect(charlie.locator("body")).not_to_contain_text("gamma grpo")
    finally:
        context.close()

    page.goto("/projects/gamma/activity/")
    expect(page.locator("#activity")).to_contain_text("labelled 1 samples (1 accepted)")
    page.screenshot(path=str(artifacts_dir / "project-activity.png"), full_page=True)
    page.goto(f"/runs/{run.pk}/")
    page.click("#archive-run")
    expect(page.locator("#run-archived")).to_be_visible()
    page.click("#delete-run")
    page.fill("#confirm-name", "gamma grpo")
    page.click("#confirm-delete")
    page.wait_for_url("**/runs/")
    assert not Run.objects.filter(pk=run.pk).exists()
