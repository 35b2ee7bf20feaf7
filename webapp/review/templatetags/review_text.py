"""Filters for showing model text: plain text, with invisible direction controls made visible."""

from __future__ import annotations

import re

from django import template

register = template.Library()

# Bidirectional controls can make text read differently from what it says (Trojan Source).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@register.filter
def reveal(value: object) -> str:
    """The text with each direction control shown as ⟨U+XXXX⟩; still autoescaped."""
    return _BIDI.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", "" if value is None else str(value))


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}"
