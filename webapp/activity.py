"""A project's activity: who launched, finished, labelled, released a gate, made a dataset or
a comparison, newest first. It reads every app's records, so it sits above them all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from webapp.compare.models import Comparison
from webapp.datasets.models import Dataset
from webapp.projects.models import Project
from webapp.projects.selectors import project_for
from webapp.review.models import Label
from webapp.runs.models import Run
from webapp.runs.stages import REVIEW

LIMIT = 100


@dataclass
class Event:
    when: datetime
    who: str
    what: str  # a sentence, shown as text
    link: str = ""
    kind: str = ""


def project_activity(project: Project, limit: int = LIMIT) -> list[Event]:
    """The project's latest events (runs launched and ended, labels by person and day, gates
    released, datasets and comparisons made), newest first: one query per kind."""
    events: list[Event] = []
    for run in Run.objects.filter(project=project).select_related("launched_by").order_by("-created_at")[:limit]:
        link = reverse("run-detail", args=[run.pk])
        who = run.launched_by.get_username() if run.launched_by else "someone"
        events.append(Event(run.created_at, who, f"launched {run.stage_label} run {run.name!r} (#{run.pk})", link,
                            "launch"))
        if run.finished_at is not None:
            released = (run.summary or {}).get("released_by") if run.stage == REVIEW else None
            if released:
                events.append(Event(run.finished_at, str(released),
                                    f"released review gate {run.name!r} with {run.summary.get('accepted')} accepted",
                                    link, "gate"))
            else:
                events.append(Event(run.finished_at, "", f"run {run.name!r} (#{run.pk}) {run.status}", link, "end"))
    days = (Label.objects.filter(rollout__run__project=project).annotate(day=TruncDate("updated_at"))
            .values("user__username", "day").annotate(n=Count("pk"), accepted=Count("pk", filter=Q(verdict="accept")))
            .order_by("-day")[:limit])
    for row in days:
        when = datetime.combine(row["day"], datetime.max.time()).replace(tzinfo=UTC)  # a day's labels: its end
        events.append(Event(when, row["user__username"], f"labelled {row['n']} samples ({row['accepted']} accepted)",
                            reverse("review-queues"), "label"))
    for d in Dataset.objects.filter(project=project).select_related("created_by").order_by("-created_at")[:limit]:
        events.append(Event(d.created_at, d.created_by.get_username() if d.created_by else "",
                            f"made dataset {d.name!r} v{d.version}", reverse("dataset-detail", args=[d.pk]), "dataset"))
    for c in Comparison.objects.filter(project=project).select_related("created_by").order_by("-created_at")[:limit]:
        events.append(Event(c.created_at, c.created_by.get_username() if c.created_by else "",
                            f"started comparison {c.name!r}", reverse("compare-detail", args=[c.pk]), "compare"))
    return sorted(events, key=lambda e: e.when, reverse=True)[:limit]


def activity_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    return render(request, "projects/activity.html", {"project": project, "events": project_activity(project)})
