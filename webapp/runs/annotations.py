"""What people add to a run: notes (Markdown, rendered through a sanitiser), tags and a star;
and the run's settings beside the stage's defaults or another run's."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, cast

import nh3
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from webapp.projects.selectors import AuthUser, can_write
from webapp.runs import stages
from webapp.runs.models import Run

TAG = re.compile(r"^[\w.\-]{1,40}$")
MAX_TAGS = 20
MAX_NOTES = 50_000
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")


def run_annotate(*, run: Run, user: AuthUser, notes: str | None = None, tags: str | list[str] | None = None,
                 starred: bool | None = None) -> Run:
    """Change a run's notes, tags (a list, or text split on commas and spaces) or star."""
    if not can_write(user, run.project_id):
        raise PermissionDenied("only project owners may change a run's notes and tags")
    fields: dict[str, Any] = {}
    if notes is not None:
        if len(notes) > MAX_NOTES:
            raise ValidationError({"notes": f"is {len(notes)} characters; at most {MAX_NOTES}"})
        fields["notes"] = notes
    if tags is not None:
        fields["tags"] = parse_tags(tags)
    if starred is not None:
        fields["starred"] = bool(starred)
    if fields:
        Run.objects.filter(pk=run.pk).update(**fields)
        run.refresh_from_db()
    return run


def parse_tags(tags: str | list[str]) -> list[str]:
    items = re.split(r"[,\s]+", tags) if isinstance(tags, str) else list(tags)
    clean = list(dict.fromkeys(t.strip().lower() for t in items if t and t.strip()))
    bad = next((t for t in clean if not TAG.match(t)), None)
    if bad is not None:
        raise ValidationError({"tags": f"{bad[:60]!r}: a tag is 1-40 letters, digits, _, . or -"})
    if len(clean) > MAX_TAGS:
        raise ValidationError({"tags": f"{len(clean)} tags; at most {MAX_TAGS}"})
    return clean


def notes_html(text: str) -> SafeString:
    """Markdown to HTML with raw HTML off, then cleaned by nh3 (links get rel=noopener)."""
    return mark_safe(nh3.clean(_MARKDOWN.render(text), link_rel="noopener noreferrer nofollow"))  # noqa: S308


@dataclasses.dataclass
class ConfigRow:
    key: str
    value: str
    default: str
    other: str | None = None

    @property
    def changed(self) -> bool:
        return self.value != self.default

    @property
    def differs(self) -> bool:
        return self.other is not None and self.other != self.value


def config_rows(run: Run, other: Run | None = None) -> list[ConfigRow]:
    """Every setting of the run (as stored) beside the stage's default, and `other`'s value."""
    defaults = _defaults(run.stage)
    keys = list(dict.fromkeys([*run.config, *(other.config if other else {}), *defaults]))
    rows = []
    for key in keys:
        value = _show(run.config[key]) if key in run.config else defaults.get(key, "—")
        other_value = None
        if other is not None:
            other_value = _show(other.config[key]) if key in other.config else _defaults(other.stage).get(key, "—")
        rows.append(ConfigRow(key, value, defaults.get(key, "—"), other_value))
    return rows


def _defaults(stage: str) -> dict[str, str]:
    spec = stages.spec(stage)
    if spec is None:
        return {}
    out = {}
    for f in dataclasses.fields(cast(Any, spec.config)):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _show(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _show(f.default_factory())
    return out


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
