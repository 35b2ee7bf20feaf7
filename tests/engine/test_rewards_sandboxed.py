"""Custom rewards written by users run in the sandbox, one sandbox per batch; operator
plugins come from the `ponder.rewards` entry point group."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.rewards import registry
from engine.rewards.sandboxed import CustomRewardError, SandboxedReward, check_source
from engine.scoring import RewardScorer
from tests.engine.sandbox_marks import needs_bwrap

BREVITY = '''
def reward(completion, example):
    if example.get("boom"):
        raise ValueError("no answer in " + example["boom"])
    return 1.0 / (1 + len(completion.split()))
'''


@needs_bwrap
def test_a_batch_is_scored_in_one_sandbox_with_each_error_kept_apart():
    fn = SandboxedReward(BREVITY, name="brevity")
    completions = ["one", "one two three", "x", "<think>a b</think> c"]
    examples = [{}, {}, {"boom": "x"}, {"answer": "c"}]
    assert fn.batch(completions, examples) == [(0.5, ""), (0.25, ""), (0.0, "ValueError: no answer in x"),
                                               (1 / 4, "")]
    assert fn("a b c", {}) == 0.25


@needs_bwrap
@pytest.mark.parametrize(("source", "message"), [
    ("def reward(c, e):\n    return 1 +\n", "gave no scores (syntax"),
    ("def reward(c, e):\n    while True: pass\n", "gave no scores (timeout"),
    ("def reward(c, e):\n    return open('/etc/shadow').read() and 1.0\n", "FileNotFoundError"),
    ("import os\ndef reward(c, e):\n    return float(len(os.listdir('" + str(Path(__file__).parent) + "')))\n",
     "FileNotFoundError"),
    ("import socket\ndef reward(c, e):\n    socket.create_connection(('127.0.0.1', 5432)); return 1.0\n", "Error"),
])
def test_a_reward_that_breaks_or_reaches_out_scores_nothing(source, message):
    fn = SandboxedReward(source, name="bad", timeout_s=2)
    try:
        results = fn.batch(["a", "b"], [{}, {}])
    except CustomRewardError as exc:
        assert message in str(exc)
    else:
        assert all(value == 0.0 and message in error for value, error in results), results


@needs_bwrap
def test_the_scorer_weights_a_custom_reward_and_reports_its_failure_once():
    logged = []
    scorer = RewardScorer({"brevity": 2.0, "format": 1.0}, log=logged.append,
                          custom={"brevity": SandboxedReward(BREVITY, name="brevity")})
    scores = scorer.score_many([("<think>a</think> b", {}), ("b", {"boom": "b"}), ("c d e", {})])
    assert scores[0] == (2 * 1 / 3 + 1.0, {"brevity": 1 / 3, "format": 1.0})
    assert scores[1][1]["brevity"] == 0.0 and scores[2][1]["brevity"] == 0.25
    assert len(logged) == 1 and "no answer in b" in logged[0]


def test_source_is_checked_before_it_is_saved():
    check_source(BREVITY)
    with pytest.raises(CustomRewardError, match="line 2"):
        check_source("def reward(c, e):\n    return (\n")
    with pytest.raises(CustomRewardError, match="must define a function `reward"):
        check_source("def score(c, e):\n    return 1.0\n")


def test_an_installed_plugin_registers_under_its_entry_point_name(tmp_path, monkeypatch):
    (tmp_path / "ponder_plugin_demo.py").write_text("def shout(completion, example):\n"
                                                    "    return float(completion.isupper())\n")
    info = tmp_path / "ponder_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ponder-plugin-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ponder.rewards]\nshout = ponder_plugin_demo:shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert "shout" in registry.names()
    assert registry.get("shout")("LOUD", {}) == 1.0
    sys.modules.pop("ponder_plugin_demo", None)


@needs_bwrap
def test_grpo_scores_with_a_custom_reward_file(tmp_path):
    from engine.events import RecordingSink
    from engine.grpo import GRPOConfig, run_grpo
    from tests.engine.tiny_lm import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    source = tmp_path / "rewards" / "brevity-v1.py"
    source.parent.mkdir()
    source.write_text(BREVITY)
    sink = RecordingSink()
    config = GRPOConfig(model=str(model), output_dir=str(tmp_path / "out"), task="arithmetic", train_examples=8,
                        eval_examples=2, rewards={"custom:brevity@1": 1.0, "task": 1.0}, group_size=4,
                        prompts_per_step=2, max_new_tokens=8, steps=1, eval_every=0,
                        custom_rewards={"custom:brevity@1": str(source)})
    assert run_grpo(config, sink).status == "succeeded"
    means = [values["reward/custom:brevity@1/mean"] for _, values in sink.metric_points
             if "reward/custom:brevity@1/mean" in values]
    assert means and 0 < means[0] <= 1  # 1 / (1 + words): never 0 for a completion
