"""Runs and what they produce: checkpoints, metric points and rollouts.

Rollouts and metric points are the big tables (tens of millions of rows). Their keys
and indexes serve the three hot reads: one run's newest steps first, one run's
rollouts within a reward band, and text search within a run.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from webapp.runs import stages


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class Pipeline(models.Model):
    """Stages chained so that each consumes what the previous one produced."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=200)
    spec = models.JSONField(default=list, help_text="The stages, in order, as submitted.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class PipelineTemplate(models.Model):
    """A project's saved pipeline design: its stages as the editor holds them, to launch again."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="pipeline_templates")
    name = models.CharField(max_length=200)
    stages = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="pipeline_template_unique")]

    def __str__(self) -> str:
        return self.name


class Run(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    stage = models.CharField(max_length=16, help_text="A stage of engine/stages.py, or external.")
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    base_checkpoint = models.ForeignKey(
        "runs.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="derived_runs"
    )
    input_dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="consumer_runs"
    )
    output_dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="producer_runs"
    )
    pipeline = models.ForeignKey(Pipeline, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    pipeline_index = models.PositiveSmallIntegerField(null=True, blank=True)
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    stop_requested = models.BooleanField(default=False)
    current_step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    eta_s = models.FloatField(null=True, blank=True)
    requeues = models.PositiveIntegerField(default=0, help_text="Times a lost worker's run was requeued.")
    summary = models.JSONField(default=dict, blank=True, help_text="Final figures, filled when the run ends.")
    notes = models.TextField(blank=True, help_text="The team's notes on the run (Markdown, shown sanitised).")
    tags = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    starred = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True, help_text="Set when archived: off the runs list, kept.")
    blocked_reason = models.CharField(
        max_length=500, blank=True,
        help_text="Set on a pipeline stage that cannot start because one before it failed or was cancelled "
                  "(its status is then cancelled, shown as blocked) until the pipeline is resumed or abandoned.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"]),
            models.Index(fields=["status"]),
            GinIndex(fields=["tags"], name="runs_run_tags_gin"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def stage_label(self) -> str:
        return stages.label(self.stage)

    @property
    def shown_status(self) -> str:
        """The status as pages show it: a pipeline stage not yet sent to a worker is
        `waiting`, one that cannot start is `blocked` (the API keeps the five statuses)."""
        if self.status == Status.CANCELLED and self.blocked_reason:
            return "blocked"
        if self.status == Status.QUEUED and not self.celery_task_id:
            return "waiting"
        return self.status


class Checkpoint(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=1000)
    architecture = models.CharField(max_length=200, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True, help_text="engine.models.model_summary() of the weights.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="checkpoint_step_unique")]

    def __str__(self) -> str:
        return f"{self.run.name} @ step {self.step}"


class MetricPoint(models.Model):
    """One scalar at one step. Keyed by (run, name, step): a re-sent point overwrites.

    No foreign key constraint in the database: its per-row check was a third of the cost of
    storing a point (docs/scaling.md); `ingest.metrics_store` locks the run row once per
    batch instead, and Django still cascades deletes."""

    pk = models.CompositePrimaryKey("run", "name", "step")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    name = models.CharField(max_length=128)
    step = models.BigIntegerField()
    value = models.FloatField()
    wall_time = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}@{self.step}={self.value}"


class Rollout(models.Model):
    """One sampled completion of one prompt at one step, with its rewards."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.BigIntegerField()
    sample_index = models.IntegerField(default=0)
    # 64-bit digest of the prompt text: the idempotency key and the "same prompt" grouping.
    prompt_hash = models.BigIntegerField()
    prompt = models.TextField()
    completion = models.TextField()
    reasoning = models.TextField(blank=True)
    final_answer = models.TextField(blank=True, help_text="What follows the reasoning.")
    reference = models.TextField(blank=True, help_text="The reference answer (the API's `answer`).")
    token_count = models.IntegerField(default=0)
    finish_reason = models.CharField(max_length=16, blank=True)
    reward = models.FloatField(default=0.0)
    rewards = models.JSONField(default=dict)
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step", "prompt_hash", "sample_index"], name="rollout_identity_unique"
            )
        ]
        # Reward pages use (run, reward, id), built by review's migration 0003; a plain
        # (run, reward) index next to it cost 32 bytes a row and an insert for nothing.
        indexes = [
            models.Index(fields=["run", "-step", "-id"], name="rollout_run_newest"),
        ]

    def __str__(self) -> str:
        return f"rollout {self.pk} (run {self.run_id}, step {self.step})"
