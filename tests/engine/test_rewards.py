"""engine.rewards: registry, format, language, length, weighted scoring, docstrings."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest

from engine import rewards
from engine.rewards import ScoreResult, UnknownRewardError, score, score_batch
from engine.rewards.length import cosine_length_reward, overlong_penalty
from engine.sandbox import SandboxUnavailable, check_available

fmt = rewards.get("format")
fmt_answer = rewards.get("format_answer_tag")
language = rewards.get("language")


# ------------------------------------------------------------------ registry


def test_the_contract_rewards_are_registered() -> None:
    assert {"format", "math", "code", "language"} <= set(rewards.names())
    assert rewards.names() == sorted(rewards.names())
    for name in rewards.names():
        assert callable(rewards.get(name))


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="registered rewards are code"):
        rewards.get("nope")
    with pytest.raises(ValueError):  # also a ValueError, for config validation
        rewards.get("nope")


def test_resolve_accepts_dotted_paths() -> None:
    assert rewards.resolve("math") is rewards.get("math")
    assert rewards.resolve("engine.rewards.language:language_reward") is language
    assert rewards.resolve("engine.rewards.language.language_reward") is language
    assert rewards.resolve("os.path:join") is __import__("os").path.join
    for bad in (
        "no_such_module.fn",
        "engine.rewards.language:nope",
        "engine.rewards.language:LANGUAGES",
        "nope",
    ):
        with pytest.raises(UnknownRewardError):
            rewards.resolve(bad)


def test_register_refuses_to_overwrite() -> None:
    with pytest.raises(ValueError, match="already registered"):
        rewards.register("format")(lambda completion, example: 0.0)


# ------------------------------------------------------------------ format

FORMAT_CASES = [
    ("<think>2 + 2 = 4</think> 4", {}, 1.0),
    ("<think>\nreasoning\n</think>\n\nThe answer is 4.", {}, 1.0),
    ("  \n<think>x</think>4", {}, 1.0),  # leading whitespace is fine
    ("<think></think> 4", {}, 1.0),  # empty reasoning still has the layout
    ("<think>x</think>", {}, 0.0),  # no answer
    ("<think>x</think>   \n ", {}, 0.0),  # blank answer
    ("4", {}, 0.0),
    ("", {}, 0.0),
    ("<think>x 4", {}, 0.0),  # unclosed
    ("x</think> 4", {}, 0.0),  # no opening tag, and none was pre-filled
    ("x</think> 4", {"think_prefilled": True}, 1.0),
    ("<think>x</think> 4", {"think_prefilled": True}, 0.0),  # a second <think>
    ("x</think>", {"think_prefilled": True}, 0.0),
    ("<think>a</think> b <think>c</think> d", {}, 0.0),  # two blocks
    ("<think>a<think>b</think> c", {}, 0.0),
    ("<think>a</think> b </think>", {}, 0.0),
    ("Sure! <think>a</think> b", {}, 0.0),  # text before the reasoning
    ("</think><think> 4", {}, 0.0),
    ("<THINK>a</THINK> b", {}, 0.0),
]


@pytest.mark.parametrize(("completion", "example", "want"), FORMAT_CASES)
def test_format(completion: str, example: dict, want: float) -> None:
    assert fmt(completion, example) == want


@pytest.mark.parametrize(
    ("completion", "want"),
    [
        ("<think>a</think>\n<answer>4</answer>", 1.0),
        ("<think>a</think><answer> 4 </answer>\n", 1.0),
        ("<think>a</think> 4", 0.0),
        ("<think>a</think><answer></answer>", 0.0),
        ("<think>a</think><answer>4</answer> trailing", 0.0),
        ("<think>a</think><answer>4</answer><answer>5</answer>", 0.0),
        ("<think>a</think><answer>4", 0.0),
    ],
)
def test_format_with_answer_tags(completion: str, want: float) -> None:
    assert fmt_answer(completion, {}) == want


def test_format_tags_are_configurable() -> None:
    custom = rewards.format_reward(think=("<reasoning>", "</reasoning>"))
    assert custom("<reasoning>a</reasoning> b", {}) == 1.0
    assert custom("<think>a</think> b", {}) == 0.0


# ------------------------------------------------------------------ language

LANGUAGE_CASES = [
    ("<think>Let me add the numbers.</think> 4", "en", 1.0),
    ("<think>Let me add the numbers.</think> 4", "zh", 0.0),
    ("<think>我们来计算</think> 4", "zh", 1.0),
    ("<think>我们 add 一下</think>", "zh", 0.8),  # 4 ideographs, 1 English word
    ("<think>我们 add 一下</think>", "en", 0.2),
    ("<think>Let x = 2, so $x^2 = 4$ and \\frac{a}{b}.</think>", "en", 1.0),  # math is no language
    ("<think>Ok. 好的</think> answer in English does not count", "en", 1 / 3),
    ("no think tags so everything counts", "en", 1.0),
    ("prefilled reasoning 好</think> English", "en", 2 / 3),
    ("<think>Привет мир hello</think>", "en", 1 / 3),
    ("<think>```python\nprint('hello world')\n```好</think>", "zh", 1.0),  # code is skipped
    ("<think>1 + 1 = 2</think>", "en", 0.0),  # nothing to count
    ("", "en", 0.0),
]


@pytest.mark.parametrize(("completion", "lang", "want"), LANGUAGE_CASES)
def test_language(completion: str, lang: str, want: float) -> None:
    assert language(completion, {"language": lang}) == pytest.approx(want)


def test_language_is_fast_on_huge_input() -> None:
    assert language("<think>" + "word " * 400_000 + "$$ unclosed", {"language": "en"}) == 1.0


# ------------------------------------------------------------------ length


@pytest.mark.parametrize(
    ("length", "want"), [(0, 0.0), (80, 0.0), (85, -0.25), (90, -0.5), (100, -1.0), (101, -1.0)]
)
def test_dapo_overlong_penalty(length: int, want: float) -> None:
    assert overlong_penalty(100, 20)("x" * length, {}) == pytest.approx(want)
    assert overlong_penalty(100, 20)("", {"completion_tokens": length}) == pytest.approx(want)


def test_overlong_penalty_validates_its_buffer() -> None:
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(100, 0)


def test_registered_length_reads_the_example() -> None:
    length = rewards.get("length")
    assert length("x" * 10, {"max_length": 100}) == 0.0
    assert length("x" * 90, {"max_length": 100, "overlong_buffer": 20}) == pytest.approx(-0.5)
    assert length("", {"completion_tokens": 5000}) == -1.0  # default max_length 4096


def test_cosine_length_reward_shapes() -> None:
    right = cosine_length_reward(100, correct=lambda c, e: 1.0)
    wrong = cosine_length_reward(100, correct=lambda c, e: 0.0)
    assert right("", {}) == pytest.approx(1.0) and right("x" * 100, {}) == pytest.approx(0.5)
    assert right("x" * 20, {}) > right("x" * 80, {})  # shorter correct answers earn more
    assert wrong("", {}) == pytest.approx(-1.0) and wrong("x" * 100, {}) == pytest.approx(-0.5)
    assert wrong("x" * 20, {}) < wrong("x" * 80, {})  # short wrong answers cost most
    assert right("x" * 101, {}) == -1.0
    assert (
        rewards.get("length_cosine")("<think>a</think> \\boxed{3}", {"answer": "3", "max_length": 10**6})
        > 0.99
    )


# ------------------------------------------------------------------ weighted sums


def _boom(completion: str, example: dict) -> float:
    raise RuntimeError("grader bug")


def _nan(completion: str, example: dict) -> float:
    return math.nan


def test_score_sums_weighted_components() -> None:
    result = score("<think>1 + 1</think> \\boxed{2}", {"answer": "2"}, {"format": 0.5, "math": 2.0})
    assert result == ScoreResult(total=2.5, components={"format": 1.0, "math": 1.0}, errors={})


def test_score_records_errors_and_never_raises() -> None:
    weights = {"format": 1.0, f"{__name__}:_boom": 1.0, f"{__name__}:_nan": 1.0, "missing": 1.0}
    result = score("<think>a</think> b", {}, weights)
    assert result.total == 1.0
    assert result.components == {
        "format": 1.0,
        f"{__name__}:_boom": 0.0,
        f"{__name__}:_nan": 0.0,
        "missing": 0.0,
    }
    assert result.errors[f"{__name__}:_boom"] == "RuntimeError: grader bug"
    assert "nan" in result.errors[f"{__name__}:_nan"]
    assert "UnknownRewardError" in result.errors["missing"]


def test_score_batch_keeps_order_and_shares_one_example() -> None:
    completions = [f"<think>t</think> \\boxed{{{i}}}" for i in range(6)] + ["garbage"]
    results = score_batch(completions, {"answer": "3"}, {"format": 1.0, "math": 1.0})
    assert [r.total for r in results] == [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 1 examples"):
        score_batch(["a", "b"], [{}], {"format": 1.0})
    assert score_batch([], [], {"format": 1.0}) == []


# ------------------------------------------------------------------ docstrings run

MODULES = ["registry", "formats", "math_reward", "code_reward", "language", "length", "combine"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"engine.rewards.{module}")
    if module == "code_reward":
        try:
            check_available()
        except SandboxUnavailable as exc:
            pytest.skip(str(exc))
    failures, attempted = doctest.testmod(mod)
    assert attempted > 0 and failures == 0


# ---- language consistency in any language (lingua) -------------------------------------

FRENCH_PROMPT = {"prompt": "Combien font deux plus deux ? Réfléchis étape par étape.", "language": "auto"}


@pytest.mark.parametrize("completion,low,high", [
    ("<think>Réfléchissons. Deux plus deux font quatre. Je vérifie encore une fois.</think> 4", 0.99, 1.0),
    ("<think>Let me think. Two plus two is four. I check it once more.</think> 4", 0.0, 0.01),
    ("<think>Réfléchissons bien ensemble. Two plus two is four, I am sure.</think> 4", 0.3, 0.7),
])
def test_the_prompts_language_is_detected_and_the_reasoning_scored_in_it(completion: str, low: float,
                                                                          high: float) -> None:
    from engine.rewards.language import language_reward

    assert low <= language_reward(completion, FRENCH_PROMPT) <= high


def test_a_rows_language_overrides_detection_and_math_belongs_to_no_language() -> None:
    from engine.rewards.language import language_reward

    german = "<think>Lass uns nachdenken. Wir rechnen $x^2 + y^2 = z^2$ und prüfen es.</think> 5"
    assert language_reward(german, {**FRENCH_PROMPT, "language": "de"}) == 1.0
    assert language_reward(german, FRENCH_PROMPT) == 0.0
    chat = {"language": "auto", "prompt": [{"role": "system", "content": "You are helpful."},
                       {"role": "user", "content": "Wie viel ist zwei plus zwei? Denk Schritt für Schritt."}]}
    assert language_reward(german, chat) == 1.0  # the user's turns say what the language is


def test_an_unknown_language_code_is_refused() -> None:
    from engine.rewards.language import language_reward

    with pytest.raises(ValueError, match="ISO 639-1 code"):
        language_reward("<think>hm</think>", {"language": "xx"})
