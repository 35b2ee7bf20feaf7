"""Supervised fine-tuning: next-token loss on completion tokens only.

Used for R1's cold start (a few long chain-of-thought examples), for SFT on
rejection-sampled data and for distillation into small students. Rows are
`{"prompt", "completion"}`, chat `{"messages": [...]}` (the last assistant turn is
the completion) or plain `{"text"}` (every token is a target).

Shapes: B = rows in a micro-batch, L = padded row length.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import distributed
from engine.config import SFTConfig
from engine.events import Sink
from engine.generation import encode_prompt
from engine.tasks.templates import format_prompt
from engine.training import (
    DataCursor,
    StageResult,
    StepClock,
    TokenBatch,
    build_masked_batch,
    build_optimizer,
    build_scheduler,
    configure_threads,
    dummy_batch,
    dummy_rows,
    load_policy,
    micro_batches,
    pad_token_id,
    restore_training_state,
    save_stage_checkpoint,
    seed_everything,
    token_logprobs,
)

__all__ = ["SFTConfig", "pack_rows", "read_sft_rows", "run_sft", "tokenize_row"]

Row = dict[str, Any]
TokenRow = tuple[list[int], list[bool]]  # token ids and, per token, whether it is a loss target


@dataclass
class _Run:
    """Everything an SFT run carries from one step to the next."""

    config: SFTConfig
    sink: Sink
    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train: list[TokenRow]
    test: list[TokenRow]
    cursor: DataCursor
    total_steps: int
    world: distributed.World = field(default_factory=distributed.World)
    step: int = 0
    clock: StepClock = field(default_factory=StepClock)
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: str | None = None


def run_sft(
    config: SFTConfig,
    sink: Sink,
    *,
    rows: list[Row] | None = None,
    eval_rows: list[Row] | None = None,
    resume_from: str | Path | None = None,
) -> StageResult:
    """Fine-tune `config.model` on completion tokens, reporting through `sink`.

    Data comes from `rows` when given, else `config.dataset`, else the reference
    solutions of `config.task`. Stops early with a checkpoint (status "cancelled") when
    `sink.should_stop()` turns true at a step boundary; `resume_from` continues a run.
    Under torchrun each process trains on its share of every batch, with the loss
    normalised by the global token count (`engine.distributed`).
    """
    configure_threads(config.num_threads)
    seed_everything(config.seed)
    world = distributed.current()
    sink = distributed.rank_zero_sink(sink, world)
    config = distributed.local_config(config, world)
    run = _setup(config, sink, rows, eval_rows, resume_from, world)
    sink.log(f"SFT: {len(run.train)} rows, {run.total_steps} steps of {config.batch_size}, "
             f"starting at step {run.step}")
    if config.eval_every and run.step == 0 and run.test:
        sink.metrics(0, {"eval/loss": _eval_loss(run)})  # the starting point of the curve
    while run.step < run.total_steps:
        if sink.should_stop():
            _save(run)
            return _result(run, "cancelled")
        run.clock.start()
        metrics = _sft_step(run)
        run.step += 1
        _end_step(run, metrics)
    final = {"eval/loss": _eval_loss(run)} if run.test else {}
    if final:
        sink.metrics(run.step, final)
    _save(run)
    return _result(run, "succeeded", final)


def _end_step(run: _Run, metrics: dict[str, float]) -> None:
    """Time the step, evaluate and save when due, report metrics and progress."""
    cfg, step, last = run.config, run.step, run.step >= run.total_steps
    metrics["step_time"] = run.clock.stop()
    metrics["tokens_per_s"] = metrics.pop("_tokens") / metrics["step_time"]
    if run.test and cfg.eval_every and step % cfg.eval_every == 0 and not last:  # the end is evaluated after
        metrics["eval/loss"] = _eval_loss(run)
    run.sink.metrics(step, metrics)
    run.history.append({"step": float(step), **metrics})
    run.sink.progress(step, run.total_steps, eta_s=run.clock.eta(run.total_steps - step))
    if cfg.save_every and step % cfg.save_every == 0 and not last:
        _save(run)


def _setup(config: SFTConfig, sink: Sink, rows: list[Row] | None, eval_rows: list[Row] | None,
           resume_from: str | Path | None, world: distributed.World) -> _Run:
    """Load model, tokenise the data, build optimiser and schedule (restored on resume)."""
    model, tokenizer, state = load_policy(config, resume_from)
    model = distributed.prepare_model(model, world, config.sharding)
    train_rows, test_rows = _load_rows(config, rows, eval_rows)
    train = _tokenize_all(config, tokenizer, train_rows, sink)
    test = _tokenize_all(config, tokenizer, test_rows, sink)
    if not train:
        raise ValueError("No training rows are left after tokenisation: check the data and max_length.")
    if config.batch_size > len(train):  # else one step would read each row several times
        sink.log(f"SFT: batch_size {config.batch_size} is more than the {len(train)} training rows; "
                 f"a step takes {len(train)}")
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config.lr_schedule, config.warmup_steps, total)
    if resume_from is not None:
        restore_training_state(optimizer, scheduler, state, model)
    cursor = DataCursor.restore(len(train), config.seed, (state.get("data_state") or {}).get("cursor"))
    model.train()
    return _Run(config, sink, model, tokenizer, optimizer, scheduler, train, test, cursor, total, world,
                step=int(state.get("step", 0)))


def _sft_step(run: _Run) -> dict[str, float]:
    """One optimizer step on the next `batch_size` rows (this process's share of them);
    returns its metrics."""
    cfg = run.config
    rows = distributed.shard([run.train[i] for i in run.cursor.take(min(cfg.batch_size, run.cursor.size))],
                             run.world)
    pad = pad_token_id(run.tokenizer)
    batches = [build_masked_batch([rows[i] for i in idx], pad, cfg.device)
               for idx in micro_batches(len(rows), cfg.micro_batch_size)]
    counts = distributed.all_sum({"targets": float(sum(b.mask.sum() for b in batches)),
                                  "tokens": float(sum(len(ids) for ids, _ in rows))}, run.world)
    total = max(counts["targets"], 1.0)  # target tokens of the global batch
    lr = float(run.scheduler.get_last_lr()[0])
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for batch in distributed.lockstep(batches, run.model, run.world):
        nll = _nll_sum(run.model, batch or dummy_batch(pad, cfg.device))
        (nll / total * (batch is not None)).backward()  # token mean over the whole (global) batch
        loss_sum += float(nll.detach()) * (batch is not None)
    params = [p for p in run.model.parameters() if p.requires_grad]
    distributed.sum_gradients(params, run.world)
    grad_norm = distributed.scalar(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf")))
    run.optimizer.step()
    run.scheduler.step()
    return {"loss": distributed.all_sum({"nll": loss_sum}, run.world)["nll"] / total, "lr": lr,
            "grad_norm": grad_norm, "epoch": run.cursor.epoch + run.cursor.position / run.cursor.size,
            "_tokens": counts["tokens"]}


def _nll_sum(model: torch.nn.Module, batch: TokenBatch) -> torch.Tensor:
    """Summed negative log-likelihood of the batch's target tokens (0-dim)."""
    logp, _ = token_logprobs(model, batch)  # (B, L')
    return -(logp * batch.mask).sum()


def _eval_loss(run: _Run) -> float:
    """Token-mean NLL of the held-out rows (each process scores its share)."""
    pad = pad_token_id(run.tokenizer)
    test = distributed.shard(run.test, run.world)
    was_training = run.model.training
    run.model.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        chunks = micro_batches(len(test), run.config.micro_batch_size)
        for idx in distributed.lockstep(chunks, run.model, run.world):
            batch = build_masked_batch([test[i] for i in idx or []] or dummy_rows(pad), pad, run.config.device)
            total += float(_nll_sum(run.model, batch)) * (idx is not None)
            count += float(batch.mask.sum()) * (idx is not None)
    run.model.train(was_training)
    sums = distributed.all_sum({"nll": total, "targets": count}, run.world)
    return sums["nll"] / max(sums["targets"], 1.0)


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _load_rows(config: SFTConfig, rows: list[Row] | None, eval_rows: list[Row] | None) -> tuple[list[Row], list[Row]]:
    """Training and held-out rows from memory, a dataset file or a task."""
    if rows is not None:
        train = list(rows)
    elif config.dataset is not None:
        train = read_sft_rows(config.dataset)
    elif config.task is not None:
        train, held_out = _task_rows(config)
        return _mixed(train, config), held_out
    else:
        raise ValueError("SFT needs data: set dataset or task in the config, or pass rows to run_sft.")
    if eval_rows is not None:
        held_out = list(eval_rows)
    elif config.eval_dataset is not None:
        held_out = read_sft_rows(config.eval_dataset)
    else:
        train, held_out = _hold_out(train, config.eval_fraction, config.seed)
    return _mixed(train, config), held_out


def _mixed(train: list[Row], config: SFTConfig) -> list[Row]:
    """`train` with `mix_ratio` rows of `mix_dataset` per row added (the held-out rows stay the
    main data's): drawn without repeats while they last, then again, by the run's seed."""
    if config.mix_dataset is None:
        return train
    pool = read_sft_rows(config.mix_dataset)
    wanted = round(len(train) * config.mix_ratio)
    rng = random.Random(config.seed)
    picked: list[Row] = []
    while len(picked) < wanted:
        picked.extend(rng.sample(pool, min(len(pool), wanted - len(picked))))
    return train + picked


def read_sft_rows(path: str | Path) -> list[Row]:
    """Rows of an SFT dataset as `engine.datasets.save_sft_dataset` writes them: JSONL,
    Parquet or a `datasets.save_to_disk` directory (its train split)."""
    from engine.datasets import DatasetError, check_sft_row

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory.")
    if p.is_dir():
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(str(p))
        rows = list(ds["train"] if isinstance(ds, DatasetDict) else ds)
    elif p.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
    else:
        with open(p, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    return [check_sft_row(row, i) for i, row in enumerate(rows, start=1)]


def _task_rows(config: SFTConfig) -> tuple[list[Row], list[Row]]:
    """Reference solutions of a built-in task, under the R1-Zero template unless told otherwise."""
    from engine import tasks

    assert config.task is not None
    task = tasks.get(config.task, **config.task_options)
    train = task.examples("train", config.train_examples)
    test = task.examples("test", 64) if config.eval_fraction or config.eval_every else []
    def as_row(ex: Row) -> Row:
        return {"prompt": ex["prompt"], "completion": " " + task.solution(ex)}

    return [as_row(ex) for ex in train], [as_row(ex) for ex in test]


def _hold_out(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Split off a seeded random `fraction` of rows for evaluation."""
    n_eval = int(len(rows) * fraction)
    if n_eval == 0:
        return rows, []
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def _tokenize_all(config: SFTConfig, tokenizer: Any, rows: list[Row], sink: Sink) -> list[TokenRow]:
    """Tokenise rows (cut to max_length), then pack them if asked."""
    # Task questions are raw: wrap them as the model will see them in RL.
    template = "auto" if config.task is not None and config.template == "none" else config.template
    out = [tokenize_row(row, tokenizer, template, config.max_length) for row in rows]
    kept = [r for r in out if r is not None and any(r[1])]
    if len(kept) < len(out):
        sink.log(f"SFT: skipped {len(out) - len(kept)} rows with no completion tokens within max_length")
    return pack_rows(kept, config.max_length) if config.packing else kept


def tokenize_row(row: Row, tokenizer: Any, template: str = "none", max_length: int = 256) -> TokenRow | None:
    """(ids, scored) for one row: prompt tokens are context, completion tokens (and EOS) are targets."""
    prompt, completion = _split_row(row)
    if not isinstance(prompt, str) or (prompt and template != "none"):
        # Chat turns always need rendering; plain prompts only when a template is asked for.
        prompt = format_prompt(prompt, tokenizer, style="auto" if template == "none" else template, system=None)
    prompt_ids = encode_prompt(tokenizer, prompt) if prompt else []
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        completion_ids.append(eos)  # learn to stop
    ids = (prompt_ids + completion_ids)[:max_length]
    scored = ([False] * len(prompt_ids) + [True] * len(completion_ids))[:max_length]
    return (ids, scored) if len(ids) >= 2 else None


def _split_row(row: Row) -> tuple[str | list[dict[str, str]], str]:
    """(prompt, completion) of a row in any of the three shapes."""
    if "messages" in row:
        messages = list(row["messages"])
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("A chat row must end with an assistant message: it is the completion to learn.")
        return messages[:-1], messages[-1]["content"]
    if "completion" in row:
        completion = row["completion"]
        if isinstance(completion, list):  # TRL's conversational layout: assistant turns
            completion = "".join(m["content"] for m in completion if m.get("role") == "assistant")
        return row.get("prompt", ""), completion
    if "text" in row:
        return "", row["text"]
    raise ValueError(f"An SFT row needs prompt + completion, messages or text; got keys {sorted(row)}.")


def pack_rows(rows: list[TokenRow], max_length: int) -> list[TokenRow]:
    """Concatenate rows end to end and cut the stream into `max_length` blocks."""
    ids = [t for r in rows for t in r[0]]
    scored = [s for r in rows for s in r[1]]
    return [(ids[i : i + max_length], scored[i : i + max_length]) for i in range(0, len(ids), max_length)
            if any(scored[i + 1 : i + max_length])]


# ----------------------------------------------------------------------------
# Bookkeeping
# ----------------------------------------------------------------------------


def _save(run: _Run) -> None:
    """Checkpoint model, optimiser, schedule and data position (rank 0 writes it)."""
    path = Path(run.config.output_dir) / f"checkpoint-{run.step}"
    gathered = distributed.full_state(run.model, run.optimizer)  # a collective when sharded
    if run.world.is_main:
        record = save_stage_checkpoint(path, run.model, run.tokenizer, step=run.step, optimizer=run.optimizer,
                                       scheduler=run.scheduler, data_state={"cursor": run.cursor.state()},
                                       config=run.config.to_dict(), full_state=gathered)
        run.sink.checkpoint(record)
    distributed.barrier(run.world)
    run.last_checkpoint = str(path)


def _result(run: _Run, status: str, final: dict[str, float] | None = None) -> StageResult:
    last = dict(run.history[-1]) if run.history else {}
    last.update(final or {})
    last.pop("step", None)
    return StageResult(status=status, step=run.step, checkpoint=run.last_checkpoint, metrics=last,
                       history=run.history)
