"""From the runs list, tick runs, overlay their curves, then group them by a config value."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.ingest import store
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE = '<img src=x onerror="window.pwned=1">'


def test_overlay_selected_runs_and_group_them(page, personas, artifacts_dir):
    runs = []
    for i, lr in enumerate([1e-6, 1e-6, 3e-6]):
        run = Run.objects.create(project=personas.project, name=f"sweep {i} {HOSTILE}", stage="grpo",
                                 status="succeeded", config={"lr": lr})
        store.metrics_store(run=run, points=[(s, "reward", s * lr * 1e5 + i) for s in range(50)]
                             + [(s, "kl", 0.01) for s in range(50)])
        runs.append(run)
    log_in(page, "bob", "bob-pass-123")
    page.goto("/runs/?sort=name")
    for run in runs:
        page.check(f"input[name=runs][value='{run.pk}']")
    page.click("#overlay-runs")
    expect(page.locator("#charts .chart[data-metric='reward'] canvas")).to_be_visible()
    expect(page.locator("#overlay-runs tbody tr")).to_have_count(3)

    page.check("#metrics input[value='kl']")
    expect(page.locator("#charts .chart")).to_have_count(2)
    page.fill("#group-by", "lr")
    page.press("#group-by", "Enter")
    expect(page.locator("#overlay-runs .group").first).to_have_text("1e-06")
    expect(page.locator(".chart[data-metric='reward'] .u-legend")).to_contain_text("lr = 3e-06 (1 run)")
    assert "group_by=lr" in page.url and "metric=kl" in page.url
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=str(artifacts_dir / "runs-overlay.png"), full_page=True)
