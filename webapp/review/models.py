from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


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
