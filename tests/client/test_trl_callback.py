"""`PonderCallback` on a real TRL `GRPOTrainer` (a tiny random Qwen2 on the CPU, 3 steps):
every completion TRL logs reaches Ponder with its per-function rewards and advantage,
in the database, through the API and live on the run's websocket; metrics too."""

from __future__ import annotations

import json
import threading
import time
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

pytest.importorskip("trl")

from ponder_client import Run  # noqa: E402
from ponder_client.trl import PonderCallback  # noqa: E402

from tests.client.conftest import FAST  # noqa: E402
from webapp.runs.models import MetricPoint, Rollout  # noqa: E402
from webapp.runs.models import Run as RunRow  # noqa: E402

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STEPS, PER_STEP = 3, 8  # 2 prompts x 4 generations per step
PROMPTS = ["1+1=", "2+3=", "4+4=", "7+2=", "5+5=", "3+6="]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([f"{a}+{b}={a + b} <think>add</think>" for a in range(10) for b in range(10)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")


def tiny_model(tokenizer):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Qwen2ForCausalLM(config)


def has_digit(completions, **kwargs):
    return [float(any(ch.isdigit() for ch in c)) for c in completions]


def short(completions, **kwargs):
    return [1.0 - min(len(c), 64) / 64 for c in completions]


def grpo_trainer(output_dir: Path, callback: PonderCallback):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(output_dir), use_cpu=True, bf16=False, report_to="none", per_device_train_batch_size=PER_STEP,
        num_generations=4, max_completion_length=8, learning_rate=1e-4, beta=0.0, logging_steps=1,
        max_steps=STEPS, seed=0, save_strategy="no", activation_checkpointing=False, log_completions=True,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    tokenizer = tiny_tokenizer()
    return GRPOTrainer(model=tiny_model(tokenizer), reward_funcs=[has_digit, short], args=args,
                       processing_class=tokenizer, train_dataset=Dataset.from_dict({"prompt": PROMPTS}),
                       callbacks=[callback])


class LiveFeed(threading.Thread):
    """A websocket client on /ws/runs/{id}/ (bearer token) that collects rollout frames."""

    def __init__(self, live_url: str, run_id: int, token: str, expected: int):
        super().__init__(daemon=True)
        self.url = live_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/"
        self.headers = {"Authorization": f"Bearer {token}", "Origin": live_url}
        self.expected, self.rollouts, self.metric_names = expected, [], set()
        self.connected = threading.Event()

    def run(self) -> None:
        from websockets.sync.client import connect

        deadline = time.monotonic() + 120
        with connect(self.url, additional_headers=self.headers) as ws:
            self.connected.set()
            while len(self.rollouts) < self.expected and time.monotonic() < deadline:
                try:
                    self.take(json.loads(ws.recv(timeout=1)))
                except TimeoutError:
                    continue

    def take(self, frame: dict) -> None:
        if frame["type"] == "rollout":
            self.rollouts.append(frame["rollout"])
        elif frame["type"] == "rollouts":
            self.rollouts.extend(frame["rollouts"])
        elif frame["type"] == "metrics":
            self.metric_names.update(p["name"] for p in frame["points"])


def test_grpo_completions_reach_ponder_live(live_url, owner_token, personas, tmp_path):
    import pandas as pd

    run = Run.create("tiny GRPO", base_url=live_url, token=owner_token, spool_dir=tmp_path / "spool", options=FAST)
    trainer = grpo_trainer(tmp_path / "out", PonderCallback(run))
    feed = LiveFeed(live_url, run.id, owner_token, expected=STEPS * PER_STEP)
    feed.start()
    assert feed.connected.wait(30)
    trainer.train()
    report = run.finish()
    feed.join(60)

    assert report.ok and report.rollouts_sent == STEPS * PER_STEP, report
    logged = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "out" / "completions").glob("*.parquet")))
    assert len(logged) == STEPS * PER_STEP  # what TRL itself logged ...
    stored = {(r.step, r.prompt, r.completion): r for r in Rollout.objects.filter(run_id=run.id)}
    assert len(stored) == len(logged)  # ... is what Ponder stored, row for row
    for row in logged.itertuples():
        got = stored[(row.step, row.prompt, row.completion)]
        assert got.rewards == pytest.approx({"has_digit": row.has_digit, "short": row.short})
        assert got.metadata["advantage"] == pytest.approx(row.advantage)
        assert got.reward == pytest.approx(row.has_digit + row.short)
    assert {r.step for r in stored.values()} == {1, 2, 3}
    assert sorted(r.sample_index for r in stored.values() if r.step == 1) == [0, 0, 1, 1, 2, 2, 3, 3]

    names = set(MetricPoint.objects.filter(run_id=run.id).values_list("name", flat=True))
    assert {"loss", "reward", "rewards/has_digit/mean", "rewards/short/mean"} <= names
    assert MetricPoint.objects.filter(run_id=run.id, name="reward").count() == STEPS

    assert len(feed.rollouts) == STEPS * PER_STEP  # the live view got every one of them
    assert {(r["step"], r["completion"]) for r in feed.rollouts} == {(k[0], k[2]) for k in stored}
    assert "reward" in feed.metric_names

    api = httpx.get(f"{live_url}/api/v1/runs/{run.id}/rollouts", params={"step": 2},
                    headers={"Authorization": f"Bearer {owner_token}"}).json()
    assert len(api["items"]) == PER_STEP and {"has_digit", "short"} == set(api["items"][0]["rewards"])

    # TRL's own completion files, imported into another run, give the same rollouts.
    imported = RunRow.objects.create(project=personas.project, name="imported", stage="external", status="running")
    call_command("import_rollouts", str(imported.pk), str(tmp_path / "out" / "completions"), stdout=StringIO(),
                 stderr=StringIO())
    assert same_view(imported.pk) == same_view(run.id)


def same_view(run_id: int) -> set[tuple]:
    return {(r.step, r.prompt, r.sample_index, r.completion, tuple(sorted(r.rewards.items())),
             round(r.metadata["advantage"], 6)) for r in Rollout.objects.filter(run_id=run_id)}


def test_the_callback_makes_and_finishes_its_own_run(live_url, owner_token, personas, tmp_path):
    callback = PonderCallback(name="own run", base_url=live_url, token=owner_token, spool_dir=tmp_path / "spool",
                              options=FAST)
    grpo_trainer(tmp_path / "out", callback).train()

    assert callback.report is not None and callback.report.ok, callback.report
    row = RunRow.objects.get(pk=callback.run.id)
    assert (row.name, row.stage, row.status) == ("own run", "external", "succeeded")
    assert row.config["num_generations"] == 4 and row.config["max_steps"] == STEPS
    assert Rollout.objects.filter(run_id=row.pk).count() == STEPS * PER_STEP
