"""`python -m engine`: stages end to end into a folder, config help, bad configs exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.__main__ import EXIT_BAD_CONFIG, main
from tests.engine.graded_helpers import SAMPLING, shared_tiny_model

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_model("teacher", tmp_path_factory)
ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_runs_into_the_output_dir(tiny_teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write(tmp_path / "eval.json", {"model": str(tiny_teacher), **SAMPLING})
    out = tmp_path / "out"
    assert main(["eval", "--config", config, "--output-dir", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "succeeded" and printed["results"] == str(out / "eval_results.jsonl")
    assert json.loads((out / "result.json").read_text()) == printed
    assert lines(out / "metrics.jsonl")[0]["eval/pass@1"] == printed["metrics"]["eval/pass@1"]
    assert len(lines(out / "rollouts.jsonl")) == 24 and len(lines(out / "eval_results.jsonl")) == 6
    assert json.loads((out / "stage_config.json").read_text())["output_dir"] == str(out)


def test_eval_reads_a_csv_in_its_own_layout_through_columns(tiny_teacher: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The CLI reads a user's file with the same mapping the web app stores (`columns`)."""
    data = tmp_path / "mine.csv"
    data.write_text("Frage,Lösung\n" + "".join(f'"Was ist {i} + {i}?",{2 * i}\n' for i in range(6)))
    config = write(tmp_path / "eval.json", {"model": str(tiny_teacher), **SAMPLING, "task": None,
                                           "dataset": str(data), "columns": {"prompt": "Frage", "answer": "Lösung"}})
    assert main(["eval", "--config", config, "--output-dir", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    results = lines(tmp_path / "out" / "eval_results.jsonl")
    assert [r["question"] for r in results] == [f"Was ist {i} + {i}?" for i in range(6)]
    assert [r["reference"] for r in results] == [str(2 * i) for i in range(6)]


def test_sft_trains_and_resumes_from_a_checkpoint(tiny_teacher: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f"Q: {a} plus 1?", "completion": f" A: {a + 1}"} for a in range(8)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"model": str(tiny_teacher), "dataset": str(data), "batch_size": 4, "micro_batch_size": 4,
              "max_steps": 2, "max_length": 32}
    out = tmp_path / "sft"
    assert main(["sft", "--config", write(tmp_path / "sft.json", config), "--output-dir", str(out)]) == 0
    assert [c["step"] for c in lines(out / "checkpoints.jsonl")] == [2]
    longer = write(tmp_path / "sft4.json", {**config, "max_steps": 3})
    assert main(["sft", "--config", longer, "--output-dir", str(out), "--resume", str(out / "checkpoint-2")]) == 0
    assert [m["step"] for m in lines(out / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize(("config", "rule"), [
    ({"k": 0}, "k (samples per prompt) must be at least 1"),
    ({"temprature": 0.6}, "temprature (did you mean temperature?)"),
    ({"top_p": "high"}, "wrong type"),
])
def test_bad_config_exits_2_with_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          config: dict[str, Any], rule: str) -> None:
    assert main(["rejection", "--config", write(tmp_path / "bad.json", config)]) == EXIT_BAD_CONFIG
    assert rule in capsys.readouterr().err


def test_help_config_lists_every_field(capsys: pytest.CaptureFixture) -> None:
    assert main(["distill", "--help-config"]) == 0
    text = capsys.readouterr().out
    for name in ("teacher", "student", "rejection", "learning_rate", "output_dir"):
        assert f"\n  {name} (" in text
    assert 'default "starter")' in text and "Checkpoint (or model name) that writes the reasoning traces." in text


def test_python_dash_m_exits_2_on_a_bad_config(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", {"task": None})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "engine", "eval", "--config", bad], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Give exactly one of task or dataset" in done.stderr and not done.stdout


def test_eval_on_humaneval_grades_in_the_sandbox_with_pass_at_k(tiny_teacher: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    config = write(tmp_path / "eval.json", {"model": str(tiny_teacher), "task": "humaneval", "num_prompts": 2,
                                           "k": 2, "pass_at": [1], "max_new_tokens": 8, "accuracy_reward": "task"})
    assert main(["eval", "--config", config, "--output-dir", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"eval/pass@1", "eval/pass@k", "eval/cons@k"} <= set(printed["metrics"])
    results = lines(tmp_path / "out" / "eval_results.jsonl")
    assert [r["id"] for r in results] == ["HumanEval/0", "HumanEval/1"]
    rollouts = lines(tmp_path / "out" / "rollouts.jsonl")
    assert len(rollouts) == 4 and all(r["rewards"]["correct"] == 0.0 for r in rollouts)  # 8 random tokens: no function
