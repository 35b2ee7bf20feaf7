"""Downloads served by the real ASGI server: the run page's metrics CSV, through the browser."""

import csv
import io
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.runs.models import MetricPoint, Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_metrics_csv_downloads_from_the_run_page(page, personas):
    run = Run.objects.create(project=personas.project, name="curves", stage="grpo", status="succeeded")
    now = timezone.now()
    MetricPoint.objects.bulk_create([MetricPoint(run=run, name="reward/mean", step=s, value=s / 10, wall_time=now)
                                     for s in range(1, 2001)])
    log_in(page, "alice", "alice-pass-123")
    page.goto(f"/runs/{run.pk}/")
    expect(page.locator("#metrics-csv")).to_be_visible()
    with page.expect_download() as info:
        page.click("#metrics-csv")
    download = info.value
    assert download.suggested_filename == f"run-{run.pk}-metrics.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == 2000 and rows[-1] == {"step": "2000", "reward/mean": "200.0"}
