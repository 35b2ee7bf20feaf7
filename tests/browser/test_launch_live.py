"""Launch an R1-Zero run from the form, watch it live, cancel it, resume it, see it finish."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.runs.models import Checkpoint, Rollout, Run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Enough steps (~0.15 s each on 2 cores) that the cancel lands mid-run.
STEPS = 40
SETTINGS = {"group_size": "4", "prompts_per_step": "2", "max_new_tokens": "24", "steps": str(STEPS),
            "eval_examples": "4", "stream_samples": "2"}


def fill_launch_form(page, name: str, **settings: str) -> None:
    page.goto("/runs/new/?stage=grpo")
    page.fill("input[name=name]", name)
    for field, value in settings.items():
        page.fill(f"[name=cfg_{field}]", value)
    page.click("#launch")


def test_launch_watch_cancel_resume_finish(page, personas, starter_model, celery_worker, artifacts_dir):
    log_in(page, "alice", "alice-pass-123")
    fill_launch_form(page, "bad", **{**SETTINGS, "group_size": "1"})
    expect(page.locator(".errorlist")).to_contain_text("group_size must be at least 2")
    assert not Run.objects.exists()

    fill_launch_form(page, "browser r1-zero", **SETTINGS)
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get(name="browser r1-zero")
    expect(page.locator("#live-streams .sample").first).to_be_visible(timeout=180_000)  # tokens as generated
    expect(page.locator("#samples .sample").first).to_be_visible(timeout=60_000)
    expect(page.locator("#charts .chart[data-series='accuracy']")).to_be_visible(timeout=60_000)
    sample = page.locator("#samples .sample").first
    expect(sample.locator(".badge").first).to_contain_text("step")
    page.screenshot(path=str(artifacts_dir / "live-run-training.png"), full_page=True, timeout=60_000)

    page.click("#cancel-run")
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=120_000)
    run.refresh_from_db()
    stopped_at = run.current_step
    assert stopped_at < STEPS and Checkpoint.objects.filter(run=run, step=stopped_at).exists()

    page.click("#resume-run")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=240_000)
    page.wait_for_timeout(1500)  # the page reloads itself to show the finished run
    page.wait_for_load_state("load")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    page.evaluate("window.stillHere = true")  # a finished run's page stays put (no reload loop)
    page.wait_for_timeout(2500)
    assert page.evaluate("window.stillHere === true")
    page.screenshot(path=str(artifacts_dir / "live-run-finished.png"), full_page=True, timeout=60_000)
    steps = list(Rollout.objects.filter(run=run).values_list("step", flat=True))
    assert sorted(set(steps)) == list(range(1, STEPS + 1)) and len(steps) == STEPS * 8


def test_the_estimate_follows_the_form_and_scales_the_defaults_to_the_model(page, personas, starter_model,
                                                                            artifacts_dir):
    log_in(page, "alice", "alice-pass-123")
    page.goto("/runs/new/?stage=grpo")
    estimate = page.locator("#estimate")
    expect(estimate).to_contain_text("Memory on the device: about", timeout=30_000)
    expect(estimate).to_contain_text("all trainable")
    learning_rate = page.locator("[name=cfg_learning_rate]")
    assert float(learning_rate.input_value()) == 2e-4  # the starter: GRPO's own defaults
    page.check("[name=cfg_lora_0]")  # LoRA, as fields
    page.fill("[name=cfg_lora_1]", "4")
    expect(estimate).to_contain_text("trainable (LoRA)")
    # Still at the stage's default, so it follows the model, and says so.
    expect(learning_rate).to_have_value("0.002")
    expect(page.locator("[data-field=learning_rate] .scaled")).to_contain_text("Scaled to this model: 0.002")
    page.screenshot(path=str(artifacts_dir / "launch-form.png"), full_page=True)
    page.fill("[name=cfg_learning_rate]", "0.0005")  # the person's own choice stays, with the suggestion beside it
    expect(page.locator("[data-field=learning_rate] .scaled")).to_contain_text("Suggested for this model: 0.002")
    assert learning_rate.input_value() == "0.0005"
    page.click("[data-field=learning_rate] .use-scaled")
    expect(learning_rate).to_have_value("0.002")
    page.fill("[name=cfg_group_size]", "1")  # the engine's rule, under its field, before Launch is pressed
    expect(page.locator("[data-field=group_size] .live-error")).to_contain_text("group_size must be at least 2")
    page.fill("[name=cfg_group_size]", "8")
    expect(page.locator(".live-error")).to_have_count(0)
    page.fill("[name=cfg_model]", "meta-llama/Llama-3.1-8B")  # not allowed here: said, not estimated
    expect(estimate).to_contain_text("is not a model you may use")
