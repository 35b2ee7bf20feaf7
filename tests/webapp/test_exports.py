"""A run's metrics (a row per step) and the explorer's rollouts as CSV and Parquet downloads."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.runs.models import MetricPoint, Rollout, Run

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response)  # the async stream, collected (the test client is synchronous)


@pytest.fixture
def run(personas):
    run = Run.objects.create(project=personas.project, name="r", stage="grpo", status="succeeded")
    now = timezone.now()
    MetricPoint.objects.bulk_create([MetricPoint(run=run, name="loss", step=1, value=0.5, wall_time=now),
                                     MetricPoint(run=run, name="loss", step=2, value=0.25, wall_time=now),
                                     MetricPoint(run=run, name="eval/accuracy", step=2, value=0.75, wall_time=now)])
    for i, (completion, correct) in enumerate([("=HYPERLINK(\"http://x\")", 0.0), ("<answer>4</answer>", 1.0)]):
        Rollout.objects.create(run=run, step=1, sample_index=i, prompt_hash=5, prompt="2+2?", completion=completion,
                               reward=correct, rewards={"math": correct, "format": 0.5})
    return run


def test_metrics_download_as_a_row_per_step(client, personas, run):
    client.force_login(personas.teammate)  # anyone who may see the run
    response = client.get(reverse("run-metrics-download", args=[run.pk, "csv"]))
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-metrics.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert rows == [{"step": "1", "eval/accuracy": "", "loss": "0.5"}, {"step": "2", "eval/accuracy": "0.75", "loss": "0.25"}]
    table = pq.read_table(io.BytesIO(body(client.get(reverse("run-metrics-download", args=[run.pk, "parquet"])))))
    assert table.column_names == ["step", "eval/accuracy", "loss"]
    assert table.to_pylist() == [{"step": 1, "eval/accuracy": None, "loss": 0.5},
                                 {"step": 2, "eval/accuracy": 0.75, "loss": 0.25}]


def test_rollouts_download_with_the_explorers_filter_and_inert_formulas(client, personas, run):
    client.force_login(personas.owner)
    url = reverse("explore-download", args=[run.pk, "csv"])
    rows = list(csv.DictReader(io.StringIO(body(client.get(url)).decode())))
    assert [r["sample_index"] for r in rows] == ["0", "1"] and rows[1]["reward/math"] == "1.0"
    assert rows[0]["completion"] == "'=HYPERLINK(\"http://x\")"  # a spreadsheet shows it, does not run it
    table = pq.read_table(io.BytesIO(body(client.get(reverse("explore-download", args=[run.pk, "parquet"])))))
    assert table.column("completion").to_pylist()[0] == "=HYPERLINK(\"http://x\")"  # exact in Parquet
    assert table.column("reward/format").to_pylist() == [0.5, 0.5]
    only = list(csv.DictReader(io.StringIO(body(client.get(url, {"reward_min": "0.5"})).decode())))
    assert [r["sample_index"] for r in only] == ["1"]
    assert client.get(reverse("explore-download", args=[run.pk, "xlsx"])).status_code == 404


def test_an_outsider_downloads_nothing(client, personas, run):
    client.force_login(personas.outsider)
    assert client.get(reverse("run-metrics-download", args=[run.pk, "csv"])).status_code == 404
    assert client.get(reverse("explore-download", args=[run.pk, "csv"])).status_code == 404
