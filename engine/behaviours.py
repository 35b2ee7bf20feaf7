"""Behaviour detectors: what R1-Zero's reasoning is doing, measured on every scored sample.

    behaviours("<think>12 - 5 = 8. Wait, let me check: 12 - 5 = 7.</think> 7", "stop")
    # {"self_verification", "backtracking"}

Each detector is a pure function of the completion text (and how it ended); a stage stores
the names found in each rollout's metadata (`behaviours`) and their shares per step as
metrics (`behaviour/<name>`), so the run page draws them as curves and the explorer finds the
samples behind a point. Markers are English and Chinese, the seed's two languages.

- self_verification: re-checking ("wait", "let me check", "double-check", "verify", 验证, 检查);
- backtracking: taking a step back ("actually", "I made a mistake", "that's wrong", 不对, 重新);
- language_mixing: the reasoning mixes Latin words and CJK characters (each at least 20%);
- repetition: a quarter or more of the reasoning's word 4-grams are repeats;
- truncated: the completion hit the length limit;
- no_answer: no final answer after the reasoning (format drift);
- empty_reasoning: the format is there but the <think> block is empty (a reward-hacking sign).

A run adds its own detectors as regular expressions (`compile_detectors`: name → pattern,
searched case-insensitively in the reasoning with the `regex` package and a time limit, so a
pattern that backtracks without end costs a sample its match, not the run its worker).
"""

from __future__ import annotations

import re
from typing import Any

from engine.tasks.base import extract_answer
from engine.text import split_reasoning

NAMES = ("self_verification", "backtracking", "language_mixing", "repetition", "truncated", "no_answer",
         "empty_reasoning")

_VERIFY = re.compile(
    r"\b(wait|let me (?:check|verify|double[- ]check|re-?check)|double[- ]check|verify(?:ing)?|check(?:ing)? again|"
    r"sanity check)\b|验证|检查一下|检查|核对|再算一遍|等等|等一下", re.IGNORECASE)
_BACKTRACK = re.compile(
    r"\b(actually|i made a mistake|that'?s (?:wrong|not right|incorrect)|that is (?:wrong|incorrect)|"
    r"let me (?:redo|start over|try again|reconsider)|on second thought|no,)\b|不对|错了|重新|我算错|换一种", re.IGNORECASE)
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_WORD = re.compile(r"\w+")


DETECTOR_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_PATTERN = 500
MAX_DETECTORS = 10
MATCH_SECONDS = 0.01  # per sample and detector: a step of 512 samples x 10 detectors spends at most ~51 s


def compile_detectors(spec: dict[str, str]) -> dict[str, Any]:
    """A run's own detectors, compiled; ValueError naming the detector and the rule."""
    import regex

    if len(spec) > MAX_DETECTORS:
        raise ValueError(f"detectors: at most {MAX_DETECTORS}, got {len(spec)}.")
    out = {}
    for name, pattern in spec.items():
        if not isinstance(name, str) or not DETECTOR_NAME.fullmatch(name) or name in NAMES:
            raise ValueError(f"detectors: {name!r} must be a new name of lowercase letters, digits and _ (built-in "
                             f"ones are {', '.join(NAMES)}).")
        if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN:
            raise ValueError(f"detectors.{name}: must be a regular expression of 1 to {MAX_PATTERN} characters.")
        try:
            out[name] = regex.compile(pattern, regex.IGNORECASE)
        except regex.error as exc:
            raise ValueError(f"detectors.{name}: not a regular expression ({exc}).") from None
    return out


def behaviours(completion: str, finish_reason: str = "stop", detectors: dict[str, Any] | None = None) -> set[str]:
    """The behaviours `completion` shows (names from NAMES, and of `detectors` that match)."""
    reasoning = _reasoning(completion)
    found = {name for name, pattern in (detectors or {}).items() if _matches(pattern, reasoning)}
    if _VERIFY.search(reasoning):
        found.add("self_verification")
    if _BACKTRACK.search(reasoning):
        found.add("backtracking")
    if _mixes_languages(reasoning):
        found.add("language_mixing")
    if _repeats(reasoning):
        found.add("repetition")
    if finish_reason == "length":
        found.add("truncated")
    if not extract_answer(completion):
        found.add("no_answer")
    if "<think>" in completion and "</think>" in completion and not reasoning:
        found.add("empty_reasoning")
    return found


def shares(found: list[set[str]], extra: tuple[str, ...] = ()) -> dict[str, float]:
    """`behaviour/<name>`: the share of samples showing each behaviour (every name, a run's own
    detectors' too, 0 included)."""
    n = max(len(found), 1)
    return {f"behaviour/{name}": sum(name in f for f in found) / n for name in (*NAMES, *extra)}


def _matches(pattern: Any, text: str) -> bool:
    try:
        return pattern.search(text, timeout=MATCH_SECONDS) is not None
    except TimeoutError:
        return False


def _reasoning(completion: str) -> str:
    """The <think> block; unfinished (no </think>: cut by the length limit), what follows <think>."""
    if "</think>" in completion:
        return split_reasoning(completion)[0]
    return completion.split("<think>", 1)[1].strip() if "<think>" in completion else completion.strip()


def _mixes_languages(text: str) -> bool:
    latin = sum(len(w) for w in _LATIN_WORD.findall(text))
    cjk = len(_CJK.findall(text)) * 2  # a character carries about a short word's meaning
    total = latin + cjk
    return total >= 20 and min(latin, cjk) / total >= 0.2


def _repeats(text: str, n: int = 4) -> bool:
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) >= 8 and 1 - len(set(grams)) / len(grams) >= 0.25
