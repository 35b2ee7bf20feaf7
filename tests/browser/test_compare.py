"""Compare two checkpoints of the starter model through the real server and Celery worker,
read them side by side, and judge three pairs blind with the keyboard alone."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.compare import selectors
from webapp.compare.models import Comparison, Judgment
from webapp.runs.models import Checkpoint, Run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def perturbed_copy(src: Path, dst: Path) -> Path:
    """A second checkpoint: the starter with a little noise on its matrices, so its
    samples differ from the original's under the same seed."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    noisy = {k: (v + 0.15 * v.std() * torch.randn(v.shape, generator=gen)) if v.ndim == 2 else v
             for k, v in weights.items()}
    save_file({k: v.contiguous() for k, v in noisy.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


@pytest.fixture
def checkpoints(personas, starter_model, server_env):
    """The starter and a perturbed copy saved in the run's folder of the server's data
    directory, as a worker saves checkpoints (Ponder trains only from its own)."""
    run = Run.objects.create(project=personas.project, name="starter-run", stage="pretrain", status="succeeded")
    noisy = Path(server_env["PONDER_DATA_DIR"]) / "runs" / str(run.pk) / "checkpoint-1"
    noisy.parent.mkdir(parents=True)
    return [Checkpoint.objects.create(run=run, step=0, path=str(starter_model)),
            Checkpoint.objects.create(run=run, step=1, path=str(perturbed_copy(starter_model, noisy)))]


def hostile_comparison(personas):
    """A comparison whose samples hold markup, a script and a direction override, stored as a
    worker stores them; finished before it commits, so the worker leaves it alone."""
    from django.db import connection, transaction

    from tests.compare.conftest import make_checkpoints, make_comparison

    def store():
        try:
            with transaction.atomic():
                return make_comparison(personas.owner, make_checkpoints(personas.project, 2, run_name="hostile"),
                                       correct=[[0, 0, 0], [0, 0, 0]])  # every answer holds the hostile text
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(store).result()


def start_comparison(page, checkpoints, shots) -> Comparison:
    page.goto(f"/compare/new/?checkpoints={checkpoints[0].pk}&checkpoints={checkpoints[1].pk}")
    for c in checkpoints:
        expect(page.locator(f"input[name=checkpoints][value='{c.pk}']")).to_be_checked()
    page.fill("input[name=num_prompts]", "3")
    page.fill("input[name=k]", "2")
    page.fill("input[name=max_new_tokens]", "32")
    page.screenshot(path=str(shots / "compare-new.png"), full_page=True)
    page.click("#start-comparison")
    page.wait_for_url("**/compare/*/")
    return Comparison.objects.get(name="starter-run @ 0 vs starter-run @ 1")


def judge_three_with_the_keyboard(page, shots) -> None:
    page.click("#judge-link")
    expect(page.locator("#remaining")).to_have_text("3")
    page.keyboard.press("?")
    expect(page.locator("#cheatsheet")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#cheatsheet")).to_be_hidden()
    assert "starter-run" not in page.locator("#pair").inner_text()  # blind until the verdict
    page.screenshot(path=str(shots / "compare-judge.png"), full_page=True)
    for n, key in enumerate(["1", "ArrowRight", " "], start=1):
        page.wait_for_function("window.ponderJudge.prefetched !== null")  # the next pair is already here
        page.keyboard.press(key)
        expect(page.locator("#mine")).to_have_text(str(n))
        expect(page.locator("#status")).to_contain_text("Left was starter-run @ step")
    expect(page.locator("#all-done")).to_be_visible()


def test_compare_two_checkpoints_and_judge_blind(page, personas, checkpoints, celery_worker, artifacts_dir):
    log_in(page, "alice", "alice-pass-123")
    comparison = start_comparison(page, checkpoints, artifacts_dir)
    expect(page.locator("#compare-status")).to_have_text("succeeded", timeout=240_000)
    page.wait_for_timeout(1000)  # the page reloads itself to show the finished comparison
    page.wait_for_load_state("load")
    expect(page.locator("#figures tbody tr")).to_have_count(2)
    expect(page.locator("#prompts .prompt-row")).to_have_count(3)
    expect(page.locator("#prompts .prompt-row").first.locator(".column")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "compare-detail.png"), full_page=True)

    comparison.refresh_from_db()
    cols = selectors.columns(comparison)
    figures = selectors.figures(comparison, cols, selectors.prompt_results(comparison))
    reported = {e.checkpoint_id: e.run.summary for e in comparison.entries.select_related("run")}
    for fig in figures:  # what the pages compute from stored samples is what the engine reported
        engine = {k.removeprefix("eval/"): v for k, v in reported[fig.checkpoint.pk].items()}
        assert fig.prompts == 3
        assert (fig.pass1, fig.passk, fig.cons, fig.length) == pytest.approx(
            (engine["pass@1"], engine["pass@k"], engine["cons@k"], engine["length_mean"]))

    judge_three_with_the_keyboard(page, artifacts_dir)
    judgments = Judgment.objects.filter(user=personas.owner, comparison=comparison).order_by("id")
    assert [j.winner for j in judgments] == ["left", "right", "tie"]
    assert len({j.prompt_index for j in judgments}) == 3

    page.goto(f"/compare/{comparison.pk}/")
    expect(page.locator("#ratings tbody tr")).to_have_count(2)
    first = checkpoints[0].pk  # the sides were shuffled: count the first checkpoint's wins
    wins = sum(j.winner == "left" and j.left_checkpoint_id == first or j.winner == "right"
               and j.right_checkpoint_id == first for j in judgments)
    expect(page.locator("#pair-rates tbody tr").first).to_contain_text(f"{wins} / {2 - wins} / 1")
    page.screenshot(path=str(artifacts_dir / "compare-judged.png"), full_page=True)

    hostile = hostile_comparison(personas)
    page.goto(f"/compare/{hostile.pk}/judge/")
    for side in ("#left-answer", "#right-answer"):  # drawn by script, through textContent
        expect(page.locator(side)).to_contain_text("<script>window.pwned=1</script>")
        expect(page.locator(side)).to_contain_text("[click](javascript:alert(1)) \u27e8U+202E\u27e9evil")
    assert page.locator("#pair script, #pair img").count() == 0
    page.goto(f"/compare/{hostile.pk}/")
    expect(page.locator("#prompts .prompt-row").first).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#prompts script, #prompts img, #prompts a[href^='javascript']").count() == 0
