"""`manage.py import_rollouts`: verl rollout dumps and TRL completion Parquet files, written
here the way those trainers write them; bad rows named by file:line, imports idempotent."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from webapp.runs.models import Rollout, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(personas):
    return Run.objects.create(project=personas.project, name="imported", stage="external", status="running")


def write_verl_dump(folder: Path, steps: int = 2, prompts: int = 3, n: int = 4) -> Path:
    """verl's RayPPOTrainer._dump_generations: `<step>.jsonl`, one object per rollout."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in range(1, steps + 1):
        lines = []
        for p in range(prompts):
            for i in range(n):
                lines.append(json.dumps({
                    "input": f"<|im_start|>user\nWhat is {p} + {p}?<|im_end|>\n<|im_start|>assistant\n",
                    "output": f"<think>{p} plus {p}</think> {2 * p + (i % 2)}", "gts": str(2 * p),
                    "score": float(i % 2 == 0), "step": step, "acc": i % 2 == 0, "pred": str(2 * p + (i % 2)),
                }, ensure_ascii=False))
        (folder / f"{step}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def write_trl_completions(folder: Path) -> Path:
    """TRL's GRPOTrainer.log with log_completions=True: completions/completions_NNNNN.parquet
    (step 5 with plain prompts, step 6 with conversations)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    chat = [{"role": "system", "content": "Think."}, {"role": "user", "content": "3+3="}]
    tables = {
        5: {"prompt": ["2+2=", "2+2="], "completion": ["<think>4</think> 4", "5"]},
        6: {"prompt": [chat, chat], "completion": [[{"role": "assistant", "content": "<think>6</think> 6"}],
                                                   [{"role": "assistant", "content": "7"}]]},
    }
    for step, table in tables.items():
        rewards = {"format_reward": [1.0, 0.0], "accuracy_reward": [1.0, math.nan if step == 6 else 0.0]}
        frame = pd.DataFrame({"step": [step] * 2, **table, **rewards, "advantage": [0.7, -0.7]})
        frame.to_parquet(folder / f"completions_{step:05d}.parquet")
    return folder


def run_import(*args: object) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_rollouts", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_a_verl_dump_once(run, tmp_path):
    dump = write_verl_dump(tmp_path / "rollouts")
    out, err = run_import(run.pk, dump)
    assert "24 rollouts from 2 file(s) imported, 24 new" in out
    assert "import_rollouts: 24/24 rows (100%), 24 new" in err
    again, _ = run_import(run.pk, dump, "--format", "verl")
    assert "imported, 0 new" in again
    assert Rollout.objects.filter(run=run).count() == 24

    r = Rollout.objects.get(run=run, step=2, prompt__contains="What is 1 + 1", sample_index=1)
    assert r.rewards == {"score": 0.0} and r.reward == 0.0 and r.reference == "2"
    assert r.completion == "<think>1 plus 1</think> 3" and r.reasoning == "1 plus 1" and r.final_answer == "3"
    assert r.metadata == {"acc": False, "pred": "3"}
    indices = Rollout.objects.filter(run=run, step=1, prompt__contains="What is 0").values_list("sample_index", flat=True)
    assert sorted(indices) == [0, 1, 2, 3]


def test_it_imports_trl_completions(run, tmp_path):
    folder = write_trl_completions(tmp_path / "out" / "completions")
    out, _ = run_import(run.pk, folder)
    assert "4 rollouts from 2 file(s) imported, 4 new" in out
    rows = {(r.prompt, r.sample_index): r for r in Rollout.objects.filter(run=run)}
    first = rows[("2+2=", 0)]
    assert first.step == 5 and first.rewards == {"format_reward": 1.0, "accuracy_reward": 1.0}
    assert first.metadata == {"advantage": 0.7} and first.final_answer == "4"
    chat = rows[("system: Think.\nuser: 3+3=", 1)]
    assert chat.completion == "7" and chat.rewards == {"format_reward": 0.0}
    assert chat.metadata == {"advantage": -0.7, "unscored": ["accuracy_reward"]}
    run_import(run.pk, folder / "completions_00006.parquet", "--reward-columns", "format_reward")
    assert Rollout.objects.filter(run=run).count() == 4  # same identities: stored once


def test_bad_rows_are_named_and_nothing_is_stored(run, tmp_path):
    dump = write_verl_dump(tmp_path / "rollouts", steps=1)
    lines = (dump / "1.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"score": 1.0', '"score": "high"')
    lines[4] = '{"input": "p", "output": "cut sh'
    lines[6] = lines[6].replace('"output": "', '"output": "\\u0000')
    lines[7] = json.dumps({"input": "p", "output": "o", "score": 1.0, "step": -3})
    lines[8] = json.dumps({"input": "p", "score": 1.0})
    (dump / "1.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError) as info:
        run_import(run.pk, dump)
    message = str(info.value)
    path = dump / "1.jsonl"
    assert f"{path}:3: score: must be a number, not str" in message
    assert f"{path}:5: line: not valid JSON (Unterminated string" in message
    assert f"{path}:7: output: must not contain NUL" in message
    assert f"{path}:8: step: Input should be greater than or equal to 0" in message
    assert f"{path}:9: output: Field required" in message
    assert message.startswith("5 bad rows, nothing imported")
    assert Rollout.objects.filter(run=run).count() == 0


def test_a_bad_trl_row_is_named(run, tmp_path):
    import pandas as pd

    folder = tmp_path / "completions"
    folder.mkdir()
    pd.DataFrame({"step": [1, 1], "prompt": ["a", "b"], "completion": ["x", None], "r": [1.0, 0.0]}).to_parquet(
        folder / "completions_00001.parquet")
    with pytest.raises(CommandError, match=r"completions_00001.parquet:2: completion: Input should be a valid string"):
        run_import(run.pk, folder)


def test_dry_run_checks_and_stores_nothing(run, tmp_path):
    out, _ = run_import(run.pk, write_verl_dump(tmp_path / "d", steps=1), "--dry-run")
    assert "12 rollouts from 1 file(s) checked (dry run)" in out
    assert Rollout.objects.count() == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p, "no such file or folder"),
        (lambda p: (p.mkdir(), p)[1], "cannot tell the format (no Parquet or JSONL files)"),
        (lambda p: (p.mkdir(), (p / "x.parquet").write_bytes(b"not parquet"), p)[2], "cannot be read as trl"),
    ],
)
def test_unusable_paths_say_why(run, tmp_path, setup, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_import(run.pk, setup(tmp_path / "in"))


def test_an_unknown_run_is_named(tmp_path, db):
    with pytest.raises(CommandError, match="run_id: no run 999"):
        run_import(999, tmp_path)
