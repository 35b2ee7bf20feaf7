"""Rendering word diffs of model text: every piece escaped, direction controls revealed."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from webapp.compare.diff import Segment
from webapp.review.templatetags.review_text import reveal

register = template.Library()

_TAGS = {"eq": "{}", "ins": "<ins>{}</ins>", "del": "<del>{}</del>"}


@register.filter
def diff_html(segments: list[Segment] | None) -> SafeString:
    """The segments as text with <ins>/<del> marks; format_html escapes each piece."""
    return format_html_join("", "{}", ((format_html(_TAGS[s.op], reveal(s.text)),) for s in segments or []))


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


@register.filter
def number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
