"""Exports (JSONL, Parquet, a zipped datasets folder) and imports of the same, with bad rows named."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from engine.datasets import load_examples
from tests.review.conftest import HOSTILE
from webapp.datasets.models import Dataset, DatasetExport, Prompt
from webapp.datasets.services import dataset_export_path

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.PONDER_DATA_DIR = tmp_path
    return tmp_path


@pytest.fixture
def sft(personas) -> Dataset:
    d = Dataset.objects.create(project=personas.project, name="sft <b>", kind="sft", row_count=3)
    Prompt.objects.bulk_create([Prompt(dataset=d, index=i, text=f"q{i} {HOSTILE}", completion=f"<think>t</think> {i}",
                                       metadata={"layout": "prompt_completion"}) for i in range(3)])
    return d


def download(client, dataset, fmt, **params):
    response = client.get(reverse("dataset-download", args=[dataset.pk, fmt]), params)
    assert response.status_code == 200, response
    return b"".join(response.streaming_content), response


def upload(client, personas, name, content, dataset_name=""):
    from workers.exports import execute_import

    response = client.post(reverse("dataset-import"), {"project": "alpha", "name": dataset_name,
                                                       "file": SimpleUploadedFile(name, content)})
    for queued in Dataset.objects.filter(status="queued"):  # no worker here: the import runs in this process
        execute_import(dataset_id=queued.pk)
    return response


def test_export_path_for_the_worker(sft, data_dir):
    path = dataset_export_path(sft, "jsonl")
    assert path == data_dir / "datasets" / str(sft.pk) / "data.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == {"prompt": f"q0 {HOSTILE}", "completion": "<think>t</think> 0"}
    assert dataset_export_path(sft, "datasets").is_dir() and dataset_export_path(sft, "parquet").suffix == ".parquet"


@pytest.mark.parametrize("fmt, name", [("jsonl", "x.jsonl"), ("parquet", "x.parquet"), ("datasets", "x.zip")])
def test_every_format_round_trips(client, personas, sft, fmt, name):
    client.force_login(personas.owner)
    content, response = download(client, sft, fmt)
    assert response["Content-Disposition"].startswith("attachment")
    response = upload(client, personas, name, content, dataset_name="sft <b>")
    again = Dataset.objects.get(name="sft <b>", version=2)
    assert response["Location"] == reverse("dataset-detail", args=[again.pk])
    assert again.kind == "sft" and again.row_count == 3 and again.source["type"] == "upload"
    assert [(p.text, p.completion) for p in again.prompts.order_by("index")] == \
        [(p.text, p.completion) for p in sft.prompts.order_by("index")]


def test_the_jsonl_viewed_in_a_browser_is_plain_text(client, personas, sft):
    client.force_login(personas.teammate)
    content, response = download(client, sft, "jsonl", view="1")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff" and "sandbox" in response["Content-Security-Policy"]
    assert "<script>window.pwned=1</script>" in content.decode()  # the data, verbatim, never rendered


def test_prompt_datasets_import_and_export_for_the_engine(client, personas):
    client.force_login(personas.owner)
    rows = [{"prompt": "2+2?", "solution": "4"}, {"prompt": [{"role": "user", "content": "3+3?"}], "answer": 6,
                                                   "data_source": "mine"}]
    upload(client, personas, "math.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    dataset = Dataset.objects.get()
    assert dataset.kind == "prompts" and dataset.name == "math" and dataset.row_count == 2
    examples = load_examples(dataset_export_path(dataset, "jsonl"))
    assert [(e["prompt"], e["answer"]) for e in examples] == [("2+2?", "4"), ([{"role": "user", "content": "3+3?"}], "6")]
    assert examples[1]["data_source"] == "mine"


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", b'{"prompt": "ok", "answer": "1"}\n{"prompt": "", "answer": "2"}\n',
     "bad.jsonl line 2: field &#x27;prompt&#x27;: must be a non-empty string"),
    ("bad.jsonl", b'{"prompt": "ok", "completion": "fine"}\n{"prompt": "ok"}\n',
     "bad.jsonl line 2: field &#x27;completion&#x27;: must be a non-empty string"),
    ("bad.jsonl", b'{"prompt": "ok", "answer": "1"}\n{not json\n', "bad.jsonl line 2: not valid JSON"),
])
def test_bad_rows_are_named_and_the_import_fails(client, personas, name, content, message):
    client.force_login(personas.owner)
    response = upload(client, personas, name, content)
    dataset = Dataset.objects.get()
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert dataset.status == "failed" and not Prompt.objects.exists()
    assert message in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("name, content, message", [
    ("bad.xlsx", b"a,b\n", "bad.xlsx: unknown format"),
    ("bad.zip", b"not a zip", "bad.zip: not a zip file"),
])
def test_bad_files_are_refused_at_upload(client, personas, name, content, message):
    client.force_login(personas.owner)
    response = upload(client, personas, name, content)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Dataset.objects.exists()


def test_zips_that_escape_are_refused(client, personas):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil/dataset_info.json", "{}")
    client.force_login(personas.owner)
    response = upload(client, personas, "evil.zip", buffer.getvalue())
    assert response.status_code == 400 and "points outside the archive" in response.content.decode()


@pytest.mark.parametrize("filename", ["../../../../etc/passwd", "/etc/passwd", "train/../../x.arrow", ".."])
def test_a_state_file_naming_data_outside_its_folder_is_refused(client, personas, filename):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hf/dataset_info.json", "{}")
        archive.writestr("hf/state.json", json.dumps({"_data_files": [{"filename": filename}]}))
    client.force_login(personas.owner)
    response = upload(client, personas, "traversal.zip", buffer.getvalue())
    assert response.status_code == 400 and "is not a file name in its own folder" in response.content.decode()
    assert not Dataset.objects.exists()


def test_who_may_import_and_download(client, personas, sft, viewer):
    for user in (personas.teammate, viewer):
        client.force_login(user)
        response = upload(client, personas, "x.jsonl", b'{"prompt": "p", "answer": "1"}\n')
        assert response.status_code == 400 and not Dataset.objects.filter(name="x").exists()
        download(client, sft, "jsonl")  # reading is for every member
    client.force_login(personas.outsider)
    assert client.get(reverse("dataset-download", args=[sft.pk, "jsonl"])).status_code == 404
    assert client.get(reverse("dataset-detail", args=[sft.pk])).status_code == 404


def test_large_exports_go_to_a_worker_with_progress(client, personas, sft, settings):
    from workers.exports import execute_export as export_run

    settings.PONDER_EXPORT_SYNC_MAX_ROWS = 2
    client.force_login(personas.owner)
    response = client.get(reverse("dataset-download", args=[sft.pk, "parquet"]))
    job = DatasetExport.objects.get()
    assert response["Location"] == reverse("dataset-export", args=[sft.pk, job.pk])
    assert client.get(response["Location"]).status_code == 200
    assert export_run(export_id=job.pk) == "done" and export_run(export_id=job.pk) == "not queued"
    status = client.get(reverse("dataset-export-json", args=[sft.pk, job.pk])).json()
    assert status["status"] == "done" and status["progress"] == 1.0 and Path(DatasetExport.objects.get().path).exists()
    content, _ = download(client, sft, "parquet")
    assert content[:4] == b"PAR1"


def test_launch_sft_prefills_the_dataset(client, personas, sft):
    client.force_login(personas.owner)
    body = client.get(reverse("dataset-detail", args=[sft.pk])).content.decode()
    assert f'href="/runs/new/?stage=sft&amp;cfg_dataset=dataset:{sft.pk}"' in body
    form = client.get(f"/runs/new/?stage=sft&cfg_dataset=dataset:{sft.pk}").context["form"]
    assert form["cfg_dataset"].value() == f"dataset:{sft.pk}"
