"""Word-level diff of two completions, for showing side by side (written for Ponder on top
of Python's difflib). Segments are plain text: templates escape them like any model text.

>>> [(s.op, s.text) for s in word_diff("so 6 - 2 = 4", "so 6 - 2 = 5")]
[('eq', 'so 6 - 2 = '), ('del', '4'), ('ins', '5')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

# Words keep the whitespace before them, so the segments put together give the text back
# while words alone are compared (a change of spacing is not a change of words).
_WORD = re.compile(r"\s*\S+|\s+$")
MAX_TOKENS = 4000  # SequenceMatcher is quadratic in the worst case; longer texts are shown undiffed


@dataclass(frozen=True)
class Segment:
    op: str  # "eq": in both; "del": only in the base; "ins": only in the other
    text: str


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_diff(base: str, other: str) -> list[Segment] | None:
    """`other` against `base`, word by word; None when the texts are too long to diff."""
    a, b = words(base), words(other)
    if len(a) + len(b) > MAX_TOKENS:
        return None
    matcher = SequenceMatcher(None, [w.strip() for w in a], [w.strip() for w in b], autojunk=False)
    out: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        new = "".join(b[j1:j2])
        if tag == "equal":
            _add(out, "eq", new)
            continue
        gone = "".join(a[i1:i2]).strip()
        kept = new.lstrip()
        _add(out, "eq", new[: len(new) - len(kept)])  # the other's spacing stays outside the highlight
        _add(out, "del", gone)
        _add(out, "ins", kept)
    return out


def _add(out: list[Segment], op: str, text: str) -> None:
    """Append, merging with the previous segment of the same kind."""
    if not text:
        return
    if out and out[-1].op == op:
        out[-1] = Segment(op, out[-1].text + text)
    else:
        out.append(Segment(op, text))
