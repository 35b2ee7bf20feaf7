from __future__ import annotations

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """A versioned set of prompts (for RL/eval) or prompt/completion pairs (for SFT)."""

    class Kind(models.TextChoices):
        PROMPTS = "prompts", "Prompts with references"
        SFT = "sft", "SFT pairs"
        PREFERENCE = "preference", "Preference pairs (chosen / rejected)"

    class Status(models.TextChoices):
        # An upload is staged by the web process and parsed by a worker: queued → importing
        # → ready, or failed with the reason; one in a layout Ponder does not recognise waits
        # in `mapping` for its column mapping first. Every other dataset is written ready.
        MAPPING = "mapping", "Waiting for its column mapping"
        QUEUED = "queued", "Queued for import"
        IMPORTING = "importing", "Importing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMPTS)
    description = models.TextField(blank=True)
    source = models.JSONField(default=dict, blank=True, help_text="Where the rows came from (upload, filter, queue).")
    row_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    rows_read = models.PositiveIntegerField(default=0, help_text="Import progress: rows read so far.")
    error = models.TextField(blank=True, help_text="Why the import failed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name", "version"], name="dataset_version_unique")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Prompt(models.Model):
    """One row of a dataset: a prompt (text or chat messages) and what judges it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="prompts")
    index = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    messages = models.JSONField(null=True, blank=True, help_text="Chat messages, when the prompt is a conversation.")
    answer = models.TextField(blank=True, help_text="Reference answer.")
    completion = models.TextField(blank=True, help_text="Target completion (SFT datasets).")
    tests = models.TextField(blank=True, help_text="Python unit tests (asserts) for code prompts.")
    language = models.CharField(max_length=8, default="en")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "index"], name="prompt_index_unique")]
        ordering = ["dataset", "index"]

    def __str__(self) -> str:
        return self.text[:60]


class DatasetExport(models.Model):
    """A dataset written to a file by a Celery task (large datasets), with its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="exports")
    fmt = models.CharField(max_length=16, help_text="jsonl, parquet or datasets (a zipped save_to_disk folder).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Share done, 0 to 1.")
    path = models.CharField(max_length=1000, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} of dataset {self.dataset_id} ({self.fmt}, {self.status})"
