"""Filter traces, label five samples with the keyboard alone, build a dataset from the accepted
ones, export it, import it back and launch SFT from it, with model text staying text."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.review.conftest import store_traces
from webapp.datasets.models import Dataset
from webapp.review.models import Label, ReviewQueue
from webapp.runs.models import Rollout

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# Typed into the rewrite box: letters that are shortcuts elsewhere, and markup that must stay text.
REWRITE = " a j k ? <b>x</b><script>window.pwned=3</script> (typed, not shortcuts)"


@pytest.fixture
def traces(personas):
    """Stored from a thread: Playwright keeps an event loop in this one, and ingestion's
    after-commit announcements (async_to_sync) may not run inside it."""
    from django.db import connection

    def store():
        try:
            return store_traces(personas)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(store).result()


def filter_explorer(page, traces, shots):
    page.goto(f"/runs/{traces.run.pk}/explore/")
    fold = page.locator("#results .reasoning-fold").filter(has_text="pwned").first
    fold.locator("summary").click()
    expect(fold.locator(".reasoning")).to_contain_text("<script>window.pwned=1</script>")
    expect(fold.locator(".reasoning")).to_contain_text("[click](javascript:alert(1)) \u27e8U+202E\u27e9evil")
    page.select_option("select[name=correct]", "yes")
    page.fill("input[name=tokens_min]", "25")
    page.fill("input[name=step_min]", "2")
    page.click("#apply-filter")
    page.wait_for_url("**correct=yes**")
    expected = Rollout.objects.filter(run=traces.run, rewards__math=1.0, token_count__gte=25, step__gte=2).count()
    expect(page.locator("#results .rollout")).to_have_count(expected)
    expect(page.locator("#match-count")).to_have_text(f"{expected} matching · ")  # the filter's total
    page.locator("#step-slider").fill("2")  # the step browser: step 2's groups alone
    page.wait_for_url("**step_max=2**")
    steps = {int(s) for s in page.locator("#results .rollout .meta b").all_inner_texts()}
    assert steps == {2}
    page.go_back()
    assert "step_max" not in page.url  # blank fields stay out of the address
    assert page.evaluate("window.pwned") is None
    assert page.locator("#results script, #results img, #results a[href^='javascript']").count() == 0
    page.screenshot(path=str(shots / "review-explorer.png"), full_page=True)


def label_five_with_the_keyboard(page, shots):
    page.fill("#queue-form input[name=name]", "keyboard review")
    page.fill("#queue-form input[name=limit]", "5")
    page.click("#make-queue")
    page.click("#start-labelling")
    expect(page.locator("#pos")).to_have_text("1")
    expect(page.locator("#total")).to_have_text("5")
    page.keyboard.press("?")
    expect(page.locator("#cheatsheet")).to_be_visible()
    page.screenshot(path=str(shots / "review-cheatsheet.png"))
    page.keyboard.press("Escape")
    for n in range(1, 6):
        expect(page.locator("#pos")).to_have_text(str(n))
        page.wait_for_function(f"window.ponderLabeller.cache.has({min(n + 1, 5)})")  # the next one prefetched
        page.keyboard.press("r" if n == 3 else "a")
        page.keyboard.press("1")
        if n == 2:
            page.keyboard.press("e")
            expect(page.locator("#rewrite")).to_be_focused()
            page.keyboard.press("Control+End")
            page.keyboard.type(REWRITE)
            expect(page.locator("#pos")).to_have_text("2")
            page.screenshot(path=str(shots / "review-labelling.png"), full_page=True)
        if n == 4:  # a note, then Ctrl+Enter: the next item's keys must not type into the note box
            page.keyboard.press("n")
            page.keyboard.type("clear but long")
        page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("Saved. That was the last item.")
    expect(page.locator("#mine")).to_have_text("5")
    page.keyboard.press("k")
    expect(page.locator("#pos")).to_have_text("4")
    assert page.evaluate("window.pwned") is None


def test_filter_label_build_export_import_launch(page, personas, traces, artifacts_dir, celery_worker):
    log_in(page, "alice", "alice-pass-123")
    filter_explorer(page, traces, artifacts_dir)
    label_five_with_the_keyboard(page, artifacts_dir)
    labels = Label.objects.filter(user=personas.owner).order_by("rollout__queue_items__position")
    assert [lab.verdict for lab in labels] == ["accept", "accept", "reject", "accept", "accept"]
    assert all(lab.tags == ["readable"] for lab in labels)
    assert labels[1].rewritten.endswith(REWRITE)
    assert labels[3].note == "clear but long" and labels[4].note == ""

    queue = ReviewQueue.objects.get()
    page.goto(f"/review/queues/{queue.pk}/")
    expect(page.locator("#items .badge.rewritten")).to_have_count(1)  # item 2, and only it
    page.fill("#queue-dataset-form input[name=name]", "keyboard-sft")
    page.click("#build-dataset")
    expect(page.locator("#row-count")).to_have_text("4 rows")
    expect(page.locator("#preview")).to_contain_text("(typed, not shortcuts)")
    page.screenshot(path=str(artifacts_dir / "review-dataset.png"), full_page=True)
    dataset_url = page.url

    with page.expect_download() as download:
        page.click("#export-jsonl")
    exported = artifacts_dir / "keyboard-sft.jsonl"
    download.value.save_as(exported)
    assert exported.read_text().count("\n") == 4

    page.goto(dataset_url.rstrip("/") + "/download/jsonl/?view=1")  # the file itself, viewed in the browser
    assert REWRITE in page.locator("body").inner_text()
    assert page.evaluate("window.pwned") is None

    page.goto("/datasets/import/")
    page.fill("input[name=name]", "keyboard-sft")
    page.set_input_files("input[name=file]", str(exported))
    page.click("#import")  # a worker parses the upload; the page refreshes until it is ready
    expect(page.locator("#row-count")).to_have_text("4 rows", timeout=60_000)
    imported = Dataset.objects.get(name="keyboard-sft", version=2)
    assert imported.source["type"] == "upload"

    page.click("#launch-sft")
    expect(page.locator("input[name=cfg_dataset]")).to_have_value(f"dataset:{imported.pk}")
    page.screenshot(path=str(artifacts_dir / "review-launch-sft.png"), full_page=True)
