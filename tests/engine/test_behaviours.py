"""Behaviour detectors on written examples, English and Chinese: each marker found where it is,
none on clean reasoning."""

import pytest

from engine.behaviours import NAMES, behaviours, shares

CLEAN = "<think>12 minus 5 is 7, so the answer is 7.</think> <answer>7</answer>"


@pytest.mark.parametrize(("completion", "finish", "expected"), [
    (CLEAN, "stop", set()),
    ("<think>十二减五等于七。</think> <answer>7</answer>", "stop", set()),
    ("<think>12 - 5 = 8. Wait, let me check: 12 - 5 = 7.</think> <answer>7</answer>", "stop",
     {"self_verification"}),
    ("<think>12 - 5 = 8. Actually, that's wrong: it is 7.</think> <answer>7</answer>", "stop", {"backtracking"}),
    ("<think>十二减五等于八。等等，让我验证一下：等于七。</think> <answer>7</answer>", "stop", {"self_verification"}),
    ("<think>十二减五等于八，不对，重新算：等于七。</think> <answer>7</answer>", "stop", {"backtracking"}),
    ("<think>First we compute the difference 十二减去五等于七 then we answer seven</think> <answer>7</answer>",
     "stop", {"language_mixing"}),
    ("<think>" + "add one and carry the two " * 6 + "</think> <answer>7</answer>", "stop", {"repetition"}),
    ("<think>12 minus 5 is", "length", {"truncated", "no_answer"}),
    ("<think>12 minus 5 is 7.</think>", "stop", {"no_answer"}),
    ("<think></think> <answer>7</answer>", "stop", {"empty_reasoning"}),
])
def test_each_detector_fires_on_its_marker_only(completion, finish, expected):
    assert behaviours(completion, finish) == expected


def test_shares_name_every_behaviour_per_step():
    found = [behaviours(CLEAN), behaviours("<think>Wait, let me check.</think> 7"), behaviours("<think>x", "length")]
    out = shares(found)
    assert set(out) == {f"behaviour/{n}" for n in NAMES}
    assert out["behaviour/self_verification"] == pytest.approx(1 / 3) and out["behaviour/truncated"] == pytest.approx(1 / 3)
    assert out["behaviour/repetition"] == 0.0


def test_a_runs_own_detectors_match_in_the_reasoning_only():
    from engine.behaviours import compile_detectors

    own = compile_detectors({"hmm": r"\bhmm+\b", "restate": r"the question asks|题目问"})
    assert behaviours("<think>Hmmm. The question asks for 7.</think> <answer>7</answer>", "stop", own) == {
        "hmm", "restate"}
    assert behaviours("<think>12 - 5 = 7.</think> <answer>hmm</answer>", "stop", own) == set()  # not in the answer
    assert behaviours("<think>题目问的是差。</think> <answer>7</answer>", "stop", own) == {"restate"}
    assert shares([{"hmm"}, set()], tuple(own))["behaviour/hmm"] == 0.5


def test_a_pattern_that_backtracks_without_end_costs_a_match_not_the_run():
    import time

    from engine.behaviours import compile_detectors

    own = compile_detectors({"evil": r"(a+)+$"})
    started = time.monotonic()
    assert behaviours("<think>" + "a" * 40 + "b</think> 7", "stop", own) == set()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(("detectors", "rule"), [
    ({"self_verification": "x"}, "must be a new name"),
    ({"Bad Name": "x"}, "must be a new name"),
    ({"open": "(unclosed"}, r"detectors.open: not a regular expression"),
    ({f"d{i}": "x" for i in range(11)}, "at most 10"),
])
def test_a_bad_detector_is_refused_by_the_config_naming_it(detectors, rule):
    from engine.config import GRPOConfig

    with pytest.raises(ValueError, match=rule):
        GRPOConfig(detectors=detectors)
