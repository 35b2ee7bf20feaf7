"""Judgements of rollouts: labels, and the review queues that hand rollouts to annotators."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

# What a new queue offers as tags (keys 1-9 on the labelling page); each queue may change them.
DEFAULT_TAGS = ["readable", "language-mixed", "wrong reasoning", "right answer by luck", "repetitive",
                "truncated", "good format"]
MAX_TAGS = 9


class Verdict(models.TextChoices):
    ACCEPT = "accept", "Accept"
    REJECT = "reject", "Reject"
    SKIP = "skip", "Skip"


class Label(models.Model):
    """One person's judgement of one rollout. Several annotators may label the same one."""

    rollout = models.ForeignKey("runs.Rollout", on_delete=models.CASCADE, related_name="labels")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    rewritten = models.TextField(blank=True, help_text="A readable rewrite of the completion (cold-start data).")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rollout", "user"], name="label_one_per_user")]

    def __str__(self) -> str:
        return f"{self.user} {self.verdict} rollout {self.rollout_id}"


def _default_tags() -> list[str]:
    return list(DEFAULT_TAGS)


class ReviewQueue(models.Model):
    """Rollouts picked by an explorer filter, in order, for the assignees to label."""

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="review_queues")
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    runs = models.ManyToManyField("runs.Run", related_name="review_queues")
    filter = models.JSONField(default=dict, blank=True, help_text="The explorer filter that picked the items.")
    tags = ArrayField(models.CharField(max_length=64), default=_default_tags, size=MAX_TAGS, blank=True)
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="review_queues", blank=True)
    item_count = models.PositiveIntegerField(default=0)
    gate_run = models.OneToOneField("runs.Run", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="review_gate", help_text="The pipeline's review gate it feeds.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return self.name


class QueueItem(models.Model):
    """One rollout at one position (1-based) of a queue."""

    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    rollout = models.ForeignKey("runs.Rollout", on_delete=models.CASCADE, related_name="queue_items")

    class Meta:
        ordering = ["queue", "position"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "position"], name="queueitem_position_unique"),
            models.UniqueConstraint(fields=["queue", "rollout"], name="queueitem_rollout_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.queue_id}#{self.position}"
