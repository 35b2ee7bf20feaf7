"""The `math` reward: answer extraction and Math-Verify equivalence, on friendly and
hostile completions."""

from __future__ import annotations

import threading
import time

import pytest

from engine import rewards
from engine.rewards import math_reward as mr

math_reward = rewards.get("math")

EQUAL = [
    ("<think>half of one</think> \\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{1/2}", "\\frac12"),
    ("\\boxed{\\dfrac{1}{2}}", "1/2"),
    ("\\boxed{50\\%}", "0.5"),
    ("\\boxed{0.5}", "50\\%"),
    ("\\boxed{\\{1, 2\\}}", "\\{2, 1\\}"),
    ("\\boxed{[1, 2)}", "[1,2)"),
    ("\\boxed{5\\text{ cm}}", "5"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\sqrt{2}/2"),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
    ("\\boxed{(x+1)^2}", "x^2+2x+1"),
    ("\\boxed{x = 2}", "2"),
    ("\\boxed{\\infty}", "\\infty"),
    ("\\boxed{-3}", "-3"),
    ("\\boxed{\\text{B}}", "B"),  # multiple choice: the exact-text path
    ("\\boxed{7}", 7),  # a numeric reference
    ("\\boxed{\\boxed{7}}", "7"),
    ("\\fbox{12}", "12"),
    ("\\boxed{1} no wait, \\boxed{\\frac{2}{3}}", "2/3"),  # the last box counts
    ("<think>3/4 of it</think> The answer is $\\frac{3}{4}$.", "0.75"),
    ("<think>6 times 7</think><answer>42</answer>", "42"),
    ("<think>6 * 7</think> 42", "$42$"),  # a delimited reference
    ("6 times 7 is 42</think> 42", "42"),  # the prompt pre-filled <think>
    ("<think>an interval</think> [1,2)", "[1, 2)"),  # bare math after </think>
    ("<answer>\\frac{1}{4}</answer>", "0.25"),
    ("we get 12 apples, then 15", "15"),  # no box, no tags: the last number
    ("\\boxed{unclosed 4", "4"),  # an unclosed box is no box: the last number
]

DIFFERENT = [
    ("\\boxed{[1,2]}", "[1,2)"),
    ("\\boxed{-3}", "3"),
    ("\\boxed{0.333}", "1/3"),
    ("\\boxed{10.01}", "10"),
    ("\\boxed{3.14159}", "\\pi"),
    ("\\boxed{2/3}", "3/2"),
    ("\\boxed{\\{1,2,3\\}}", "\\{1,2\\}"),
    ("\\boxed{x^2-1}", "x^2+1"),
    ("\\boxed{A}", "B"),
    ("<think>it is 4</think> 5", "4"),  # the answer, not the reasoning, counts
    ("\\boxed{4} and later 4.5", "4.5"),  # the box wins over the last number
    ("\\boxed{12}", "1, 2"),
]

GARBAGE = [
    "",
    "<think></think>",
    "<think>only thinking, never finished",
    "\\boxed{}",
    "}}}{{{\\boxed{{{",
    "$$$$",
    "\\frac{\\frac{",
    "🙂" * 1000,
    "\x00\x01\x02",
    "<think>x</think>" + "$" * 5000,
    "\\boxed{" + "(" * 3000 + "}",
    "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{\\sqrt{-1}^{\\infty}}",
    "\\boxed{" + "1+" * 800 + "1}",
]


@pytest.mark.parametrize(("completion", "answer"), EQUAL)
def test_equal_answers_score_one(completion: str, answer: object, monkeypatch) -> None:
    # Equality, not speed: a loaded 2-core CI machine once took over the default 2 s to
    # simplify 2*sqrt(3) = sqrt(12), which then scored 0.0 (the timeout's job, not a wrong grade).
    monkeypatch.setenv("PONDER_MATH_TIMEOUT_S", "30")
    assert math_reward(completion, {"answer": answer}) == 1.0


@pytest.mark.parametrize(("completion", "answer"), DIFFERENT)
def test_wrong_answers_that_look_right_score_zero(completion: str, answer: str) -> None:
    assert math_reward(completion, {"answer": answer}) == 0.0


@pytest.mark.parametrize("completion", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_scores_zero_without_raising(completion: str) -> None:
    start = time.monotonic()
    assert math_reward(completion, {"answer": "9"}) == 0.0
    assert time.monotonic() - start < 15


def test_huge_completions_are_handled_fast() -> None:
    start = time.monotonic()
    assert math_reward("<think>" + "let me think. " * 200_000 + "</think> \\boxed{9}", {"answer": "9"}) == 1.0
    assert math_reward("\\boxed{" * 200_000, {"answer": "9"}) == 0.0
    assert math_reward("7 " * 1_000_000, {"answer": "7"}) == 1.0
    assert math_reward("\\boxed{" + "9" * 100_000 + "}", {"answer": "9"}) == 0.0  # answer too long
    assert time.monotonic() - start < 5


def test_a_pathological_expression_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_MATH_TIMEOUT_S", "1")
    start = time.monotonic()
    assert math_reward("\\boxed{9^{9^{9^{9}}}}", {"answer": "5"}) == 0.0
    assert time.monotonic() - start < 3 * 1 + 2 + 1
    assert math_reward("\\boxed{5}", {"answer": "5.0"}) == 1.0  # and the next call works


def test_it_works_from_many_threads_at_once() -> None:
    cases = [(f"\\boxed{{\\frac{{{i}}}{{2}}}}", str(i / 2), 1.0) for i in range(1, 9)]
    cases += [(f"\\boxed{{{i}}}", str(i + 1), 0.0) for i in range(8)]
    results: dict[int, float] = {}

    def work(index: int) -> None:
        completion, answer, _ = cases[index]
        results[index] = math_reward(completion, {"answer": answer})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(cases))] == [want for *_, want in cases]


def test_a_killed_helper_is_replaced() -> None:
    assert math_reward("\\boxed{0.5}", {"answer": "1/2"}) == 1.0
    pool = mr._helpers()
    for helper in list(pool._all):
        helper.proc.kill()
        helper.proc.wait()
    assert math_reward("\\boxed{0.5}", {"answer": "1/2"}) == 1.0


def test_a_missing_reference_is_an_error_not_a_zero() -> None:
    with pytest.raises(KeyError):
        math_reward("\\boxed{1}", {})
    result = rewards.score("\\boxed{1}", {}, {"math": 1.0})
    assert result.total == 0.0 and "KeyError" in result.errors["math"]


@pytest.mark.parametrize(
    ("completion", "want"),
    [
        ("\\boxed{a{b}c}", "\\boxed{a{b}c}"),
        ("x \\boxed {3}", "\\boxed{3}"),
        ("<think>\\boxed{1}</think> final: \\boxed{2}", "\\boxed{2}"),
        ("<think>a</think> The answer is $4$.", "The answer is $4$."),
        ("<think>a</think> 2\\sqrt{3}", "\\boxed{2\\sqrt{3}}"),
        ("<think>a</think>", None),
        ("no numbers", None),
        ("-3.5 or 1,000", "1,000"),
    ],
)
def test_extract_answer(completion: str, want: str | None) -> None:
    assert mr.extract_answer(completion) == want
