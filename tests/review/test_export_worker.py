"""A large export runs in a real Celery worker and reports its progress."""

import time

import pytest
from django.urls import reverse

from webapp.datasets.models import Dataset, DatasetExport, Prompt

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_writes_a_large_export(client, personas, settings, celery_worker):
    settings.PONDER_EXPORT_SYNC_MAX_ROWS = 10
    d = Dataset.objects.create(project=personas.project, name="big", kind="sft", row_count=50)
    Prompt.objects.bulk_create([Prompt(dataset=d, index=i, text=f"q{i}", completion=f"a{i}") for i in range(50)])
    client.force_login(personas.teammate)
    response = client.get(reverse("dataset-download", args=[d.pk, "jsonl"]))
    job = DatasetExport.objects.get()
    assert response["Location"] == reverse("dataset-export", args=[d.pk, job.pk])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(reverse("dataset-export-json", args=[d.pk, job.pk])).json()
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert status["status"] == "done", status
    assert status["progress"] == 1.0 and status["download"] == reverse("dataset-download", args=[d.pk, "jsonl"])
    body = b"".join(client.get(status["download"]).streaming_content).decode()
    assert body.count("\n") == 50 and '"prompt": "q49"' in body
    assert "Download" in client.get(reverse("dataset-export", args=[d.pk, job.pk])).content.decode()
