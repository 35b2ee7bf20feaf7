"""The SFT stage on a tiny random Qwen2: loss falls, prompts are masked, stop/resume work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.events import RecordingSink
from engine.sft import SFTConfig, pack_rows, run_sft, tokenize_row
from engine.training import build_masked_batch
from tests.engine.tiny_lm import build_tiny_model

torch.set_num_threads(1)

ROWS = [{"prompt": f"Q: {a} plus {b}?", "completion": f" A: {a + b}"} for a in range(4) for b in range(4)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-sft") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def make_config(model: Path, out: Path, **kw: Any) -> SFTConfig:
    base = dict(model=str(model), output_dir=str(out), learning_rate=1e-2, batch_size=8, micro_batch_size=4,
                max_steps=12, max_length=64, seed=0, eval_every=6)
    base.update(kw)
    return SFTConfig(**base)


def test_loss_falls_and_eval_loss_is_reported(tiny_model: Path, tmp_path: Path) -> None:
    sink = RecordingSink()
    result = run_sft(make_config(tiny_model, tmp_path), sink, rows=ROWS, eval_rows=ROWS[:4])
    assert result.status == "succeeded" and result.step == 12
    losses = [m["loss"] for _, m in sink.metric_points if "loss" in m]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3
    evals = [m["eval/loss"] for _, m in sink.metric_points if "eval/loss" in m]
    assert len(evals) == 3 and evals[-1] < evals[0]  # before training, at step 6, at the end
    assert {"lr", "tokens_per_s", "grad_norm"} <= set(sink.metric_points[1][1])
    assert Path(result.checkpoint or "").is_dir() and sink.checkpoints[-1].step == 12


def test_prompt_tokens_are_not_targets(tokenizer: Any) -> None:
    ids, scored = tokenize_row({"prompt": "Q: 1 plus 2?", "completion": " A: 3"}, tokenizer)
    prompt_len = len(tokenizer("Q: 1 plus 2?")["input_ids"])
    assert scored == [False] * prompt_len + [True] * (len(ids) - prompt_len)
    assert ids[-1] == tokenizer.eos_token_id
    batch = build_masked_batch([(ids, scored)], pad_id=tokenizer.pad_token_id)
    targets = batch.input_ids[:, batch.start + 1 :][batch.mask]
    assert targets.tolist() == ids[prompt_len:]


def test_loss_equals_hf_loss_with_prompt_labels_ignored(tiny_model: Path, tokenizer: Any) -> None:
    from engine.models import load_model
    from engine.sft import _nll_sum

    model = load_model(str(tiny_model), dtype="float32", device="cpu")
    rows = [tokenize_row(r, tokenizer) for r in ROWS[:3]]
    batch = build_masked_batch([r for r in rows if r], tokenizer.pad_token_id)
    ours = _nll_sum(model, batch) / batch.mask.sum()
    labels = batch.input_ids.clone()
    for i, r in enumerate(rows):
        assert r is not None
        flags = torch.tensor(r[1] + [False] * (labels.shape[1] - len(r[1])))
        labels[i][~flags] = -100  # HF's ignore index: prompt and padding
    theirs = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=labels).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_chat_and_text_rows(tokenizer: Any) -> None:
    chat = tokenize_row({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
                        tokenizer)
    assert chat is not None and chat[1][-1] and not chat[1][0]
    text = tokenize_row({"text": "plain words"}, tokenizer)
    assert text is not None and all(text[1])
    with pytest.raises(ValueError, match="prompt \\+ completion, messages or text"):
        tokenize_row({"question": "?"}, tokenizer)


def test_packing_keeps_the_masks(tokenizer: Any) -> None:
    rows = [tokenize_row(r, tokenizer, max_length=64) for r in ROWS]
    packed = pack_rows([r for r in rows if r], max_length=32)
    assert all(len(ids) <= 32 and len(ids) == len(scored) for ids, scored in packed)
    assert sum(sum(s) for _, s in packed) <= sum(sum(r[1]) for r in rows if r)


def test_packed_run_and_task_data(tiny_model: Path, tmp_path: Path) -> None:
    result = run_sft(make_config(tiny_model, tmp_path, task="arithmetic", train_examples=16, packing=True,
                                 max_steps=2, eval_every=0, max_length=512), RecordingSink())
    assert result.status == "succeeded" and result.step == 2


def test_stop_and_resume_match_uninterrupted(tiny_model: Path, tmp_path: Path) -> None:
    config = make_config(tiny_model, tmp_path / "full", max_steps=4, eval_every=0)
    full = run_sft(config, RecordingSink(), rows=ROWS)

    class StopAfterTwo(RecordingSink):
        def should_stop(self) -> bool:
            return len(self.metric_points) >= 2

    part = replace(config, output_dir=str(tmp_path / "part"))
    stopped = run_sft(part, StopAfterTwo(), rows=ROWS)
    assert stopped.status == "cancelled" and stopped.step == 2
    resumed = run_sft(part, RecordingSink(), rows=ROWS, resume_from=stopped.checkpoint)
    assert resumed.step == 4
    want = {int(h["step"]): h["loss"] for h in full.history}
    for h in resumed.history:
        assert h["loss"] == pytest.approx(want[int(h["step"])], rel=1e-5)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="at most one of dataset or task"):
        SFTConfig(dataset="x.jsonl", task="arithmetic")
    with pytest.raises(ValueError, match=r"Unknown SFTConfig keys: epoch \(did you mean epochs\?\)"):
        SFTConfig.from_dict({"epoch": 2})
    from engine.sft import _load_rows

    with pytest.raises(ValueError, match="SFT needs data"):
        _load_rows(SFTConfig(), None, None)


def test_reads_saved_sft_datasets(tiny_model: Path, tmp_path: Path) -> None:
    from engine.datasets import save_sft_dataset
    from engine.sft import read_sft_rows

    path = save_sft_dataset(ROWS, tmp_path / "sft.jsonl")
    assert read_sft_rows(path) == ROWS
    result = run_sft(make_config(tiny_model, tmp_path / "out", dataset=str(path), max_steps=1, eval_fraction=0.25,
                                 eval_every=0), RecordingSink())
    assert result.status == "succeeded" and "eval/loss" in result.metrics


def test_a_batch_larger_than_the_data_reads_each_row_once_per_epoch(tiny_model: Path, tmp_path: Path) -> None:
    sink = RecordingSink()
    result = run_sft(make_config(tiny_model, tmp_path, batch_size=64, epochs=1, max_steps=None), sink, rows=ROWS[:5])
    assert result.status == "succeeded" and result.step == 1
    epochs = [values["epoch"] for _, values in sink.metric_points if "epoch" in values]
    assert epochs == [1.0]  # one pass over the 5 rows, not 64 / 5 = 12.8 epochs
    assert any("batch_size 64 is more than the 5 training rows" in line for line in sink.lines)


def test_non_reasoning_data_is_mixed_in_at_its_ratio(tiny_model: Path, tmp_path: Path) -> None:
    from engine.datasets import save_sft_dataset
    from engine.sft import _load_rows

    main = save_sft_dataset(ROWS, tmp_path / "reasoning.jsonl")  # 16 rows
    chat = [{"prompt": f"Write a line about {w}.", "completion": f" {w.title()} is fine."} for w in ("sun", "rain", "snow")]
    mix = save_sft_dataset(chat, tmp_path / "writing.jsonl")
    config = make_config(tiny_model, tmp_path / "out", dataset=str(main), mix_dataset=str(mix), mix_ratio=0.5,
                         eval_fraction=0.25, max_steps=1, eval_every=0)
    train, held_out = _load_rows(config, None, None)
    assert len(held_out) == 4 and all(r in ROWS for r in held_out)  # held out from the main data only
    mixed = [r for r in train if r in chat]
    assert len(train) == 12 + 6 and len(mixed) == 6  # 0.5 per row: every writing row twice, none thrice
    assert {r["prompt"] for r in mixed} == {c["prompt"] for c in chat}
    assert _load_rows(config, None, None)[0] == train  # the same rows every time (the seed)
    assert run_sft(config, RecordingSink()).status == "succeeded"
    with pytest.raises(ValueError, match="mix_dataset and mix_ratio go together"):
        make_config(tiny_model, tmp_path, dataset=str(main), mix_dataset=str(mix))
