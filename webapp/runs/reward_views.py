"""The project's reward functions page: write Python, try it on recent completions in the
sandbox, save it as the next version; runs then name it as `custom:<name>@<version>`.

It sits with runs because trying a reward reads the project's rollouts."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render

from webapp.projects.selectors import AuthedRequest, can_write, project_for
from webapp.rewards import selectors, services
from webapp.rewards.models import CustomReward
from webapp.runs.models import Rollout

STARTER_SOURCE = '''def reward(completion: str, example: dict) -> float:
    """1.0 for a short answer after the reasoning, less the longer it gets."""
    answer = completion.rsplit("</think>", 1)[-1]
    return 1.0 / (1 + len(answer.split()) / 20)
'''


def reward_list(request: AuthedRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    editing = request.GET.get("edit", "")
    base = selectors.reward_by_ref(project.pk, f"custom:{editing}") if editing else None
    form: dict[str, Any] = {"name": editing, "source": base.source if base else STARTER_SOURCE, "note": ""}
    tried: list[dict[str, Any]] = []
    if request.method == "POST":
        form = {k: request.POST.get(k, "") for k in ("name", "source", "note")}
        try:
            if request.POST.get("action") == "save":
                saved = services.reward_save(project=project, user=request.user, **form)
                messages.success(request, f"Saved {saved.ref}: name it in a run's rewards.")
                return redirect(f"{request.path}?edit={saved.name}")
            tried = _tried(project.pk, form["source"])
        except ValidationError as exc:
            messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
    return render(request, "rewards/list.html", {
        "project": project, "rewards": selectors.latest_versions(project.pk), "form": form, "tried": tried,
        "versions": CustomReward.objects.filter(project=project, name=form["name"]) if form["name"] else [],
        "can_write": can_write(request.user, project.pk),
    })


def _tried(project_id: int, source: str) -> list[dict[str, Any]]:
    samples = _samples(project_id)
    scores = services.reward_try(source, samples)
    return [{"completion": c, "answer": ex.get("answer", ""), "value": v, "error": e}
            for (c, ex), (v, e) in zip(samples, scores, strict=True)]


def _samples(project_id: int, limit: int = 8) -> list[tuple[str, dict[str, Any]]]:
    """The project's latest completions with their examples (as a reward receives them)."""
    rows = Rollout.objects.filter(run__project_id=project_id).order_by("-id")[:limit]
    samples = [(r.completion, {"prompt": r.prompt, "answer": r.reference, **(r.metadata or {})}) for r in rows]
    return samples or selectors.EXAMPLES
