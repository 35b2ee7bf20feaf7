"""Checkpoint comparisons: k samples per prompt from each checkpoint, scored with the same
rewards, and blind pairwise judgments of those samples by people. The sampling is one
eval run per checkpoint; a comparison's status and progress are its runs'."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Greatest, Least


class Comparison(models.Model):
    """Two or more checkpoints sampled on the same prompts with the same settings."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="comparisons")
    name = models.CharField(max_length=200)
    checkpoints = models.ManyToManyField("runs.Checkpoint", through="ComparisonEntry", related_name="comparisons")
    # The prompts: a built-in task's split, or a dataset of the project.
    task = models.CharField(max_length=32, blank=True)
    split = models.CharField(max_length=16, default="test")
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="comparisons")
    num_prompts = models.PositiveIntegerField(default=20)
    # Sampling and scoring, the same for every checkpoint.
    k = models.PositiveSmallIntegerField(default=4)
    temperature = models.FloatField(default=0.6)
    top_p = models.FloatField(default=0.95)
    max_new_tokens = models.PositiveIntegerField(default=128)
    rewards = models.JSONField(default=dict, blank=True, help_text="Reward name → weight, scored on every sample.")
    accuracy_reward = models.CharField(max_length=64, default="task")
    seed = models.IntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    pipeline = models.ForeignKey("runs.Pipeline", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="comparisons", help_text="Made when this pipeline ended: every stage.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return self.name


class ComparisonEntry(models.Model):
    """A checkpoint's place (column) in a comparison; the first is the diff baseline. Its
    samples come from an ordinary eval run of the checkpoint (`run`): queued, claimed,
    cancelled, resumed and shown live like any run."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="entries")
    checkpoint = models.ForeignKey("runs.Checkpoint", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()
    run = models.OneToOneField("runs.Run", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="comparison_entry")

    class Meta:
        ordering = ["comparison", "position"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "checkpoint"], name="compare_entry_unique"),
            models.UniqueConstraint(fields=["comparison", "position"], name="compare_entry_position_unique"),
        ]

    def __str__(self) -> str:
        return f"column {self.position} of comparison {self.comparison_id}"


class ComparisonPrompt(models.Model):
    """One prompt of a comparison, as the person reads it (the question, not the template)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="prompts")
    index = models.PositiveIntegerField()
    question = models.TextField()
    reference = models.TextField(blank=True)

    class Meta:
        ordering = ["comparison", "index"]
        constraints = [models.UniqueConstraint(fields=["comparison", "index"], name="compare_prompt_unique")]

    def __str__(self) -> str:
        return self.question[:60]


class PromptResult(models.Model):
    """One checkpoint's k samples of one prompt, summed up (as engine.evaluate scores them)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="prompt_results")
    checkpoint = models.ForeignKey("runs.Checkpoint", on_delete=models.CASCADE, related_name="+")
    prompt_index = models.PositiveIntegerField()
    n = models.PositiveSmallIntegerField(help_text="Samples.")
    correct = models.PositiveSmallIntegerField(help_text="Samples the accuracy reward marked correct.")
    cons = models.FloatField(help_text="1.0 when the majority answer is correct (cons@k).")
    majority = models.TextField(blank=True)
    length_mean = models.FloatField(help_text="Mean completion length in tokens.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "prompt_index", "checkpoint"],
                                               name="compare_result_unique")]

    def __str__(self) -> str:
        return f"prompt {self.prompt_index} by checkpoint {self.checkpoint_id}: {self.correct}/{self.n}"


class ComparisonSample(models.Model):
    """One completion of one prompt by one checkpoint, with the same rewards as the others."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="samples")
    checkpoint = models.ForeignKey("runs.Checkpoint", on_delete=models.CASCADE, related_name="+")
    prompt_index = models.PositiveIntegerField()
    sample_index = models.PositiveSmallIntegerField()
    completion = models.TextField()
    reasoning = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    rewards = models.JSONField(default=dict)
    total = models.FloatField(default=0.0, help_text="Weighted sum of the rewards.")
    correct = models.BooleanField(default=False)
    token_count = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "prompt_index", "checkpoint", "sample_index"],
                                               name="compare_sample_unique")]

    def __str__(self) -> str:
        return f"sample {self.sample_index} of prompt {self.prompt_index} by checkpoint {self.checkpoint_id}"


class Winner(models.TextChoices):
    LEFT = "left", "Left is better"
    RIGHT = "right", "Right is better"
    TIE = "tie", "Tie"


class Judgment(models.Model):
    """A person's blind verdict on two samples of one prompt by two checkpoints. Each person
    judges a (prompt, pair of checkpoints) once, whichever side each was shown on."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    prompt_index = models.PositiveIntegerField()
    left = models.ForeignKey(ComparisonSample, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(ComparisonSample, on_delete=models.CASCADE, related_name="+")
    # Copied from the samples: the ratings read them without joining the samples.
    left_checkpoint = models.ForeignKey("runs.Checkpoint", on_delete=models.CASCADE, related_name="+")
    right_checkpoint = models.ForeignKey("runs.Checkpoint", on_delete=models.CASCADE, related_name="+")
    winner = models.CharField(max_length=8, choices=Winner.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                F("comparison"), F("user"), F("prompt_index"),
                Least("left_checkpoint", "right_checkpoint"), Greatest("left_checkpoint", "right_checkpoint"),
                name="judgment_once_per_pair"),
            models.CheckConstraint(condition=~models.Q(left_checkpoint=F("right_checkpoint")),
                                   name="judgment_two_checkpoints"),
        ]

    def __str__(self) -> str:
        return f"{self.user} judged prompt {self.prompt_index}: {self.winner}"


class PairTicket(models.Model):
    """A blind pair handed to one judge. The page holds only `token`, random and opaque;
    which sample is on which side stays here, for that judge, until it expires."""

    token = models.CharField(max_length=64, unique=True)
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    left = models.ForeignKey(ComparisonSample, on_delete=models.CASCADE, related_name="+")
    right = models.ForeignKey(ComparisonSample, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"pair ticket of {self.user} in comparison {self.comparison_id}"
