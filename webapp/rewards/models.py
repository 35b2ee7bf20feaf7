"""Reward functions a project's people write in the browser: Python source, versioned.

A version is never changed once saved (runs name the version they used); saving new source
under a name adds the next version.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

REF = "custom:"  # how a run's config names one: custom:<name>@<version>


class CustomReward(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="custom_rewards")
    name = models.CharField(max_length=40)
    version = models.PositiveIntegerField()
    source = models.TextField(help_text="Python defining reward(completion, example) -> float.")
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["project", "name", "version"], name="one_version_per_name")]

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{REF}{self.name}@{self.version}"
