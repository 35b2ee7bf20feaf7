"""The trace explorer's filter: parsed from a query string, applied to a run's rollouts.

A filter is a frozen dataclass so it can be stored with a review queue (`to_params`) and
read back (`parse_filter`) unchanged. Every rule is checked here; a bad value raises
`FilterError` with a sentence that names the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db.models import BooleanField, CharField, Exists, FloatField, OuterRef, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce

from engine.behaviours import DETECTOR_NAME
from engine.behaviours import NAMES as BEHAVIOURS
from webapp.review.models import Label, Verdict
from webapp.runs.models import Rollout

SORTS = {
    "newest": "newest step first, a prompt's samples together",
    "oldest": "oldest step first",
    "best": "highest total reward first",
    "worst": "lowest total reward first",
    "longest": "most tokens first",
}
LABELS = ("accept", "reject", "skip", "labelled", "unlabelled")
FINISH_REASONS = ("stop", "length")
MAX_NAME = 64
MAX_QUERY = 200


class FilterError(ValueError):
    """A filter value that breaks a rule; the message names the field."""


@dataclass(frozen=True)
class Component:
    """A range on one reward component, `rewards->>'name'` cast to a float."""

    name: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ExplorerFilter:
    step_min: int | None = None
    step_max: int | None = None
    reward_min: float | None = None
    reward_max: float | None = None
    components: tuple[Component, ...] = ()
    correct_by: str = ""  # the reward that says "correct" when it equals 1
    correct: str = ""  # "yes", "no" or "" (either)
    tokens_min: int | None = None
    tokens_max: int | None = None
    finish: str = ""
    label: str = ""
    tag: str = ""
    behaviour: str = ""  # a name from engine.behaviours (the samples behind a behaviour curve)
    q: str = ""
    sort: str = "newest"

    def to_params(self) -> dict[str, str]:
        """The query string that parses back to this filter (blank fields left out)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "components" or value in (None, ""):
                continue
            if f.name == "sort" and value == "newest":
                continue
            out[f.name] = _text(value)
        for c in self.components:
            if c.low is not None:
                out[f"rmin.{c.name}"] = _text(c.low)
            if c.high is not None:
                out[f"rmax.{c.name}"] = _text(c.high)
        return out

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _int(params: Any, name: str) -> int | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FilterError(f"{name}: must be a whole number, not {raw[:40]!r}") from None


def _float(params: Any, name: str) -> float | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FilterError(f"{name}: must be a number, not {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise FilterError(f"{name}: must be a finite number")
    return value


def _choice(params: Any, name: str, allowed: tuple[str, ...] | dict[str, str], default: str = "") -> str:
    value = (params.get(name) or "").strip() or default
    if value and value not in allowed:
        raise FilterError(f"{name}: must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def _behaviour(params: Any) -> str:
    """A built-in behaviour, or a run's own detector (a name such as `hmm`)."""
    value = (params.get("behaviour") or "").strip()
    if value and value not in BEHAVIOURS and not DETECTOR_NAME.fullmatch(value):
        raise FilterError(f"behaviour: one of {', '.join(BEHAVIOURS)} or a run's own detector name, not {value[:40]!r}")
    return value


def _name(value: str, what: str) -> str:
    value = value.strip()
    if len(value) > MAX_NAME:
        raise FilterError(f"{what}: a name of at most {MAX_NAME} characters")
    return value


def _components(params: Any) -> tuple[Component, ...]:
    names = sorted({k.split(".", 1)[1] for k in params if k.startswith(("rmin.", "rmax.")) and "." in k})
    out = []
    for name in names:
        low, high = _float(params, f"rmin.{name}"), _float(params, f"rmax.{name}")
        if low is None and high is None:
            continue
        out.append(Component(_name(name, "reward component"), low, high))
    return tuple(out)


def parse_filter(params: Any) -> ExplorerFilter:
    """An ExplorerFilter from a QueryDict (or a dict of strings); raises FilterError."""
    flt = ExplorerFilter(
        step_min=_int(params, "step_min"), step_max=_int(params, "step_max"),
        reward_min=_float(params, "reward_min"), reward_max=_float(params, "reward_max"),
        components=_components(params),
        correct_by=_name(params.get("correct_by") or "", "correct_by"),
        correct=_choice(params, "correct", ("yes", "no")),
        tokens_min=_int(params, "tokens_min"), tokens_max=_int(params, "tokens_max"),
        finish=_choice(params, "finish", FINISH_REASONS), label=_choice(params, "label", LABELS),
        tag=_name(params.get("tag") or "", "tag"), behaviour=_behaviour(params),
        q=(params.get("q") or "").strip(),
        sort=_choice(params, "sort", SORTS, "newest"),
    )
    if flt.correct and not flt.correct_by:
        raise FilterError("correct_by: name the reward that is 1 for a correct answer (e.g. math)")
    if len(flt.q) > MAX_QUERY:
        raise FilterError(f"q: search for at most {MAX_QUERY} characters")
    return flt


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _reward_of(name: str) -> Cast:
    return Cast(KeyTextTransform(name, "rewards"), FloatField())


def _ranges(qs: QuerySet[Rollout], flt: ExplorerFilter) -> QuerySet[Rollout]:
    bounds = {
        "step__gte": flt.step_min, "step__lte": flt.step_max,
        "reward__gte": flt.reward_min, "reward__lte": flt.reward_max,
        "token_count__gte": flt.tokens_min, "token_count__lte": flt.tokens_max,
    }
    qs = qs.filter(**{k: v for k, v in bounds.items() if v is not None})
    for i, c in enumerate(flt.components):
        alias = f"_rc{i}"
        qs = qs.alias(**{alias: _reward_of(c.name)})
        if c.low is not None:
            qs = qs.filter(**{f"{alias}__gte": c.low})
        if c.high is not None:
            qs = qs.filter(**{f"{alias}__lte": c.high})
    return qs


def _correctness(qs: QuerySet[Rollout], flt: ExplorerFilter) -> QuerySet[Rollout]:
    if not flt.correct:
        return qs
    qs = qs.alias(_correct=Coalesce(_reward_of(flt.correct_by), Value(0.0)))
    return qs.filter(_correct=1.0) if flt.correct == "yes" else qs.exclude(_correct=1.0)


def _labels(qs: QuerySet[Rollout], flt: ExplorerFilter) -> QuerySet[Rollout]:
    labels = Label.objects.filter(rollout=OuterRef("pk"))
    if flt.label in Verdict.values:
        qs = qs.filter(Exists(labels.filter(verdict=flt.label)))
    elif flt.label == "labelled":
        qs = qs.filter(Exists(labels))
    elif flt.label == "unlabelled":
        qs = qs.filter(~Exists(labels))
    if flt.tag:
        tag = Value([flt.tag], output_field=ArrayField(CharField()))
        qs = qs.filter(Exists(labels.filter(tags__contains=tag)))
    return qs


def apply_filter(qs: QuerySet[Rollout], flt: ExplorerFilter) -> QuerySet[Rollout]:
    """`qs` narrowed by every field of `flt` (ordering and pagination are the caller's)."""
    qs = _correctness(_ranges(qs, flt), flt)
    if flt.finish:
        qs = qs.filter(finish_reason=flt.finish)
    if flt.behaviour:
        qs = qs.filter(metadata__behaviours__contains=[flt.behaviour])
    if flt.q:
        # Substring semantics (ILIKE) over prompt and completion. No trigram index: it would
        # turn a rare term's full scan (seconds) into milliseconds but make ingestion 2.5x
        # slower (benchmarks/bench_explorer.py --trigram); selectors bound the scan instead.
        pattern = f"%{_escape_like(flt.q)}%"
        qs = qs.filter(RawSQL('("runs_rollout"."prompt" ILIKE %s OR "runs_rollout"."completion" ILIKE %s)',
                              (pattern, pattern), output_field=BooleanField()))
    return _labels(qs, flt)
