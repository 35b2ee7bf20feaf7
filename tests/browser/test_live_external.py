"""A run logged from outside appears live in the browser, with model text shown as text."""

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.accounts.services import api_token_create
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">[click](javascript:alert(1)) \u202eevil'


def test_rollouts_and_curves_arrive_live_and_stay_text(page, personas, live_url, artifacts_dir):
    run = Run.objects.create(project=personas.project, name="external live", stage="external", status="running")
    token = api_token_create(user=personas.owner)
    log_in(page, "bob", "bob-pass-123")  # a teammate may watch
    page.goto(f"/runs/{run.pk}/")
    page.wait_for_function("window.ponderSocket && window.ponderSocket.readyState === 1")
    headers = {"Authorization": f"Bearer {token}"}
    rollouts = [{"step": s, "prompt": f"q{s}", "completion": f"<think>{HOSTILE} step {s}</think> {s}",
                 "rewards": {"math": s % 2, "format": 1.0}} for s in range(1, 4)]
    assert httpx.post(f"{live_url}/api/v1/runs/{run.pk}/rollouts", json={"rollouts": rollouts}, headers=headers).status_code == 201
    points = [{"step": s, "name": n, "value": v} for s in range(1, 4) for n, v in (("reward/mean", s / 4), ("kl", 0.01 * s))]
    assert httpx.post(f"{live_url}/api/v1/runs/{run.pk}/metrics", json={"points": points}, headers=headers).status_code == 201

    expect(page.locator("#samples .sample")).to_have_count(3)
    expect(page.locator("#charts .chart[data-series='kl']")).to_be_visible()
    expect(page.locator("#charts .chart[data-series='reward']")).to_be_visible()
    first = page.locator("#samples .sample").first
    expect(first.locator(".reasoning")).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#samples script, #samples img").count() == 0
    page.screenshot(path=str(artifacts_dir / "live-external-run.png"), full_page=True)

    page.click("#pause-stream")
    more = [{"step": 9, "prompt": "late", "completion": "<think>x</think> 9", "rewards": {"math": 1.0}}]
    httpx.post(f"{live_url}/api/v1/runs/{run.pk}/rollouts", json={"rollouts": more}, headers=headers)
    expect(page.locator("#sample-count")).to_have_text("4 received")
    expect(page.locator("#samples .sample")).to_have_count(3)  # paused: counted, not shown
