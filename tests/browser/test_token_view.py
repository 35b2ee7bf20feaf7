"""The token heatmap in the browser: shaded tokens, hover values, hostile text inert."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.runs.models import Rollout, Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_token_heatmap_reads_and_stays_text(page, personas, artifacts_dir):
    run = Run.objects.create(project=personas.project, name="tokens", stage="grpo", status="succeeded")
    pieces = ["<think>", " Tom", " has", " 3", ".", " Wait", ",", " <img src=x onerror=window.pwned=1>", " 3",
              " +", " 5", " =", " 8", ".", "</think>", " <answer>", " 8", " </answer>"]
    logprobs = [-0.01, -0.5, -0.1, -0.2, -0.05, -3.2, -0.4, -5.0, -0.3, -0.1, -0.6, -0.05, -0.9, -0.1, -0.02,
                -0.03, -0.7, -0.01]
    rollout = Rollout.objects.create(run=run, step=12, prompt_hash=1, prompt="Tom has 3 apples and buys 5.",
                                     completion="".join(pieces), token_count=len(pieces), reward=1.0,
                                     metadata={"advantage": 0.8, "token_view": {"pieces": pieces, "logprobs": logprobs}})
    log_in(page, "alice", "alice-pass-123")
    page.goto(f"/runs/{run.pk}/rollouts/{rollout.pk}/tokens/")
    expect(page.locator("#token-heatmap .tok")).to_have_count(len(pieces))
    expect(page.locator("#token-heatmap .tok").nth(5)).to_have_attribute("title", "log-prob -3.200 · p 0.04")
    expect(page.locator("#token-heatmap")).to_contain_text("<img src=x onerror=window.pwned=1>")
    assert page.locator("#token-heatmap img").count() == 0 and page.evaluate("window.pwned") is None
    page.screenshot(path=str(artifacts_dir / "token-heatmap.png"), full_page=True)
