"""The `language` reward: R1's language-consistency reward, the share of the reasoning
written in ``example["language"]``: an ISO 639-1 code (``"en"`` when absent), or ``"auto"``
(what users' datasets get when a row does not say) for the prompt's language, detected by
lingua.

English and Chinese, the seed's two, are counted by units as below (fast, exact on
mixed text). Any other language goes through lingua: the reasoning is cut into sentences
and each sentence's letters count for the language lingua finds in it.

Reasoning is the text inside the ``<think>`` block (up to ``</think>``; the opening tag
may have been pre-filled by the prompt), else the whole completion. Before counting,
fenced code, LaTeX math (``$...$``, ``\\(...\\)``, ``\\[...\\]``) and LaTeX commands are
removed: formulas belong to no language. Units then are:

- an English word: a run of ASCII letters (with inner apostrophes) of at least two
  letters, or the words "a" and "I" (single letters are mostly variables);
- a Chinese unit: one CJK ideograph (Chinese is not written with spaces);
- any other word (Cyrillic, Arabic, kana runs, accented Latin, ...): one unit of no
  target language.

The reward is target units / all units, in [0, 1]; reasoning with no units scores 0.0.

>>> language_reward("<think>Let me add the numbers.</think> 4", {"language": "en"})
1.0
>>> language_reward("<think>我们 add 一下</think> 4", {"language": "zh"})
0.8
"""

from __future__ import annotations

import functools
import re
from typing import Any

from engine.rewards.registry import register
from engine.text import user_text

LANGUAGES = ("en", "zh")
MAX_CHARS = 200_000  # a longer reasoning is judged on its first MAX_CHARS characters
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_STRIP = re.compile(
    r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+",
    re.DOTALL,
)
_UNIT = re.compile(rf"[{_CJK}]|[A-Za-z]+(?:'[A-Za-z]+)*|[^\W\d_{_CJK}]+")


def language_reward(completion: str, example: dict[str, Any]) -> float:
    """Share of the reasoning's units in ``example["language"]`` (see the module doc).

    >>> language_reward("<think>计算 2+2 等于 4</think>", {"language": "zh"})
    1.0
    >>> language_reward("", {"language": "en"})
    0.0
    """
    language = example.get("language") or "en"  # CONTRACTS: a row without one is read as English
    if language == "auto":
        language = prompt_language(example) or "en"
    text = reasoning_text(completion)[:MAX_CHARS]
    if language not in LANGUAGES:
        return lingua_share(text, language)
    counts = count_units(text)
    total = sum(counts.values())
    return counts[language] / total if total else 0.0


# Languages lingua tells apart when it detects a prompt's language, or a sentence's in a
# reasoning (plus the target, when it is not among them). All 75 of lingua's at once cost
# ~1 GB and 16 s to load; these ~220 MB and a few seconds, once per process.
COMMON = ("ar", "de", "en", "es", "fa", "fr", "hi", "id", "it", "ja", "ko", "nl", "pl", "pt", "ru", "sv",
          "th", "tr", "uk", "vi", "zh")
_SENTENCE = re.compile(r"(?<=[.!?;:。！？；：])\s*|\n+")
_LETTER = re.compile(r"[^\W\d_]")


def known_language(code: str) -> bool:
    """Whether `code` is an ISO 639-1 code lingua can detect."""
    from lingua import IsoCode639_1

    return isinstance(code, str) and code.isalpha() and hasattr(IsoCode639_1, code.upper())


@functools.cache
def _detector(extra: str | None = None) -> Any:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    codes = sorted(set(COMMON) | ({extra} if extra else set()))
    languages = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in codes]
    return LanguageDetectorBuilder.from_languages(*languages).build()


def detect_language(text: str, among: str | None = None) -> str | None:
    """The ISO 639-1 code of `text`'s language (math and code left out), or None."""
    found = _detector(among if among not in COMMON else None).detect_language_of(_STRIP.sub(" ", text))
    return None if found is None else found.iso_code_639_1.name.lower()


@functools.lru_cache(maxsize=4096)
def _prompt_language(text: str) -> str | None:
    return detect_language(text)


def prompt_language(example: dict[str, Any]) -> str | None:
    """The language of the example's prompt (its user turns, for chat prompts)."""
    prompt = user_text(example.get("prompt") or example.get("question") or "")
    return _prompt_language(prompt[:MAX_CHARS]) if prompt.strip() else None


def lingua_share(text: str, language: str) -> float:
    """Share of the letters of `text` in sentences lingua reads as `language`.

    >>> lingua_share("Réfléchissons. Nous ajoutons deux et deux.", "fr")
    1.0
    """
    if not known_language(language):
        raise ValueError(f"language must be an ISO 639-1 code lingua knows (or auto), got {language!r}")
    total = hits = 0
    for sentence in _SENTENCE.split(_STRIP.sub(" ", text)):
        letters = len(_LETTER.findall(sentence))
        if letters:
            total += letters
            hits += letters * (detect_language(sentence, language) == language)
    return hits / total if total else 0.0


def reasoning_text(completion: str) -> str:
    """The text inside the think block, else the whole completion.

    >>> reasoning_text("<think> a b </think> c")
    ' a b '
    >>> reasoning_text("prefilled thinking</think> c")
    'prefilled thinking'
    """
    end = completion.find("</think>")
    if end < 0:
        start = completion.find("<think>")
        return completion if start < 0 else completion[start + len("<think>") :]
    head = completion[:end]
    start = head.find("<think>")
    return head if start < 0 else head[start + len("<think>") :]


def count_units(text: str) -> dict[str, int]:
    """{"en": English words, "zh": CJK ideographs, "other": other words}.

    >>> count_units("I have 3 苹果 and x = y, привет")
    {'en': 3, 'zh': 2, 'other': 1}
    """
    counts = {"en": 0, "zh": 0, "other": 0}
    for unit in _UNIT.findall(_STRIP.sub(" ", text)):
        if re.fullmatch(f"[{_CJK}]", unit):
            counts["zh"] += 1
        elif unit.isascii():
            counts["en"] += len(unit) > 1 or unit in ("a", "I")
        else:
            counts["other"] += 1
    return counts


register("language")(language_reward)
