"""GRPO: group-relative policy optimisation, the RL stage of the R1 recipe.

The stage loop `run_grpo` samples groups, scores them with verifiable rewards and
updates the policy; the pure tensor math (advantages, the clipped policy loss) lives in
`engine.grpo_math` and is re-exported here.

Shapes: B = number of sampled completions in a batch (n_groups * group_size),
T = padded completion length.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from engine import distributed
from engine.behaviours import behaviours, compile_detectors
from engine.behaviours import shares as behaviour_shares
from engine.config import CURRICULUM_KEYS, GRPOConfig
from engine.events import RolloutRecord, Sink
from engine.grpo_math import group_advantages, policy_loss
from engine.metrics import reward_hacking
from engine.models import checkpointing_layers
from engine.moe import expert_load, routers
from engine.scoring import RewardFn, RewardScorer, sandboxed_rewards
from engine.tasks.base import extract_answer
from engine.tasks.templates import format_prompt
from engine.text import split_reasoning
from engine.training import (
    DataCursor,
    GroupedBatch,
    PackedBatch,
    StageResult,
    StepClock,
    TokenBatch,
    attach_sampler_logprobs,
    build_grouped_batch,
    build_optimizer,
    build_packed_batch,
    build_scheduler,
    build_token_batch,
    configure_threads,
    load_policy,
    micro_batches,
    packing_supported,
    pad_token_id,
    restore_training_state,
    save_stage_checkpoint,
    seed_everything,
    sequence_logprobs,
)

__all__ = ["GRPOConfig", "group_advantages", "policy_loss", "run_grpo"]

Batch = TokenBatch | GroupedBatch | PackedBatch
REF_FILE = "ref_model.pt"  # reference weights kept beside a GRPO checkpoint


# ----------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything a GRPO run carries from one step to the next."""

    config: GRPOConfig
    sink: Sink
    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: Any
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    cursor: DataCursor
    scorer: RewardScorer
    ref_model: torch.nn.Module | None = None  # a frozen copy of the policy (None: no KL, or base_reference)
    base_reference: bool = False  # LoRA: the reference is the policy with its adapter off
    world: distributed.World = field(default_factory=distributed.World)
    step: int = 0
    clock: StepClock = field(default_factory=StepClock)
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: str | None = None
    eos: set[int] = field(default_factory=set)  # a completion ending in one has no stop string
    packing_ok: bool = False  # the model reads packed rows as separate sequences (`packing_supported`)
    task: Any = None  # the built-in task (None for a dataset): it made the examples, it scores them
    detectors: dict[str, Any] = field(default_factory=dict)  # the run's own behaviour detectors, compiled
    moe: bool = False  # the model routes tokens to experts: their load is measured
    curriculum: _Curriculum | None = None


@dataclass
class _Curriculum:
    """Where a reasoning_gym task's difficulty curriculum stands: the level trained at and
    the accuracies of the steps since it began."""

    level: int
    top: int  # the hardest level
    promote_at: float
    window: int
    recent: list[float] = field(default_factory=list)

    @classmethod
    def restore(cls, config: GRPOConfig, task: Any, saved: dict[str, Any] | None) -> _Curriculum | None:
        if not config.curriculum:
            return None
        settings = {**CURRICULUM_KEYS, **config.curriculum}
        saved = saved or {}
        top = max(task.levels() - 1, 0)
        return cls(level=min(int(saved.get("level", settings["start_level"])), top), top=top,
                   promote_at=float(settings["promote_at"]), window=int(settings["window"]),
                   recent=[float(a) for a in saved.get("recent", [])])

    def observe(self, accuracy: float) -> bool:
        """Record a step's accuracy; True when it moves the curriculum up a level."""
        self.recent = [*self.recent, accuracy][-self.window:]
        if self.level >= self.top or len(self.recent) < self.window or sum(self.recent) / self.window < self.promote_at:
            return False
        self.level, self.recent = self.level + 1, []
        return True

    def state(self) -> dict[str, Any]:
        return {"level": self.level, "recent": list(self.recent)}


def run_grpo(
    config: GRPOConfig,
    sink: Sink,
    *,
    resume_from: str | Path | None = None,
    reward_functions: dict[str, RewardFn] | None = None,
) -> StageResult:
    """Train `config.model` with GRPO, reporting through `sink`.

    Each step: take the next prompts, sample `group_size` completions each, score them,
    turn rewards into group-relative advantages and take `num_iterations` clipped
    policy-gradient steps. Stops early (with a checkpoint, status "cancelled") when
    `sink.should_stop()` turns true at a step boundary. `resume_from` continues from a
    checkpoint of an earlier run of the same config, step for step. `reward_functions`
    adds custom `(completion, example) -> float` rewards, weighted by name in `config.rewards`.

    Under torchrun each process samples and trains on its share of every step's prompts
    (whole groups); rewards are gathered so advantages and metrics are global, and the
    losses and weights equal one process's on the same batch (`engine.distributed`).
    """
    configure_threads(config.num_threads)
    seed_everything(config.seed)
    world = distributed.current()
    sink = distributed.rank_zero_sink(sink, world)
    config = distributed.local_config(config, world)
    run = _setup(config, sink, resume_from, reward_functions or {}, world)
    sink.log(f"GRPO: {config.steps} steps of {config.prompts_per_step} prompts x {config.group_size} "
             f"samples, starting at step {run.step}")
    if config.eval_every and run.step == 0 and run.test:
        baseline = _evaluate(run)  # step 0: where the base model starts
        sink.metrics(0, baseline)
        run.history.append({"step": 0.0, **baseline})
    while run.step < config.steps:
        if sink.should_stop():
            _save(run)
            return _result(run, "cancelled")
        run.clock.start()
        metrics = _grpo_step(run, run.step + 1)
        run.step += 1
        _end_step(run, metrics)
    final = _evaluate(run) if run.test else {}
    if final:
        sink.metrics(run.step, final)
    _save(run)
    return _result(run, "succeeded", final)


def _end_step(run: _Run, metrics: dict[str, float]) -> None:
    """Time the step, evaluate and save when due, report metrics and progress."""
    cfg, step = run.config, run.step
    metrics["step_time"] = run.clock.stop()
    metrics["tokens_per_s"] = metrics.pop("_tokens") / metrics["step_time"]
    _advance_curriculum(run, metrics)
    if _every(cfg.eval_every, step) and step < cfg.steps:  # the last step is evaluated after the loop
        metrics.update(_evaluate(run))
        _watch_for_hacking(run, step, metrics)
    run.sink.metrics(step, metrics)
    run.history.append({"step": float(step), **metrics})
    run.sink.progress(step, cfg.steps, eta_s=run.clock.eta(cfg.steps - step))
    if _every(cfg.save_every, step) and step < cfg.steps:
        _save(run)


def _watch_for_hacking(run: _Run, step: int, metrics: dict[str, float]) -> None:
    """At an evaluation: `alarm/reward_hacking` (1 when the training reward rose while
    held-out accuracy fell, `engine.metrics.reward_hacking`), and a line in the log."""
    hacking = reward_hacking([*run.history, {"step": float(step), **metrics}])
    metrics["alarm/reward_hacking"] = float(hacking)
    if hacking:
        run.sink.log(f"GRPO: reward hacking? At step {step} the training reward rose while held-out accuracy "
                     f"fell to {metrics['eval/accuracy']:.2f}: read the samples behind the reward (explorer).")


def _advance_curriculum(run: _Run, metrics: dict[str, float]) -> None:
    """Log the level this step trained at; once accuracy has held at `promote_at` for a
    window of steps, train on the next level's problems (every process decides alike: the
    accuracy is global)."""
    c = run.curriculum
    if c is None:
        return
    metrics["curriculum/level"] = float(c.level)
    if c.observe(metrics.get("accuracy", 0.0)):
        run.train, _ = _load_prompts(run.config, run.tokenizer, run.task, c.level, with_test=False)
        run.cursor = DataCursor.restore(len(run.train), run.config.seed + c.level, None)
        run.sink.log(f"GRPO: curriculum level {c.level} of {c.top} from step {run.step + 1}: "
                     + ", ".join(f"{k}={v}" for k, v in run.task.level_options(c.level).items()))


def _setup(config: GRPOConfig, sink: Sink, resume_from: str | Path | None,
           reward_functions: dict[str, RewardFn], world: distributed.World) -> _Run:
    """Load the policy (fresh or from a checkpoint), data, rewards, optimiser and sampler."""
    if config.prompts_per_step < world.size:
        raise ValueError(f"prompts_per_step ({config.prompts_per_step}) must be at least the number of "
                         f"processes ({world.size}): each process samples whole groups.")
    model, tokenizer, state = load_policy(config, resume_from)
    # Before sharding: the reference stays whole on every rank (it only runs forwards).
    base_reference = config.beta > 0 and _adapter_off_reference(model, config)
    ref_model = _reference_model(model, resume_from, config) if config.beta > 0 and not base_reference else None
    if base_reference:
        sink.log("GRPO: the KL reference is the policy with its LoRA adapter off (no second copy)")
    model = distributed.prepare_model(model, world, config.sharding)
    model.eval()  # no dropout: sampling and training must see the same policy
    task = _task(config)
    data_state = state.get("data_state") or {}
    curriculum = _Curriculum.restore(config, task, data_state.get("curriculum"))
    train, test = _load_prompts(config, tokenizer, task, None if curriculum is None else curriculum.level)
    optimizer = build_optimizer(model, config)
    total_updates = config.steps * config.num_iterations
    scheduler = build_scheduler(optimizer, config.lr_schedule, config.warmup_steps, total_updates)
    if resume_from is not None:
        restore_training_state(optimizer, scheduler, state, model)
    from engine.backends import make_generator, resolve_backend
    from engine.generation import eos_ids

    generator = make_generator(config.generation_backend, model, tokenizer)
    sink.log(f"GRPO: sampling with the {resolve_backend(config.generation_backend, model)} backend"
             + (" (auto)" if config.generation_backend == "auto" else ""))
    run = _Run(config, sink, model, tokenizer, optimizer, scheduler, generator, train, test,
               DataCursor.restore(len(train), config.seed + (curriculum.level if curriculum else 0),
                                  data_state.get("cursor")),
               RewardScorer(config.rewards, task, sink.log,
                            {**sandboxed_rewards(config.custom_rewards), **_judge(config), **reward_functions}),
               world=world,
               ref_model=ref_model, base_reference=base_reference, step=int(state.get("step", 0)), eos=eos_ids(model, tokenizer),
               packing_ok=config.batch_layout in ("auto", "packed") and packing_supported(model),
               task=task, curriculum=curriculum, detectors=compile_detectors(config.detectors),
               moe=bool(routers(model)))
    if config.batch_layout == "packed" and not run.packing_ok:
        raise ValueError("batch_layout packed: this model does not read packed rows as separate sequences "
                         "(its attention ignores restarting position ids); use grouped or padded.")
    return run


@dataclass
class _Round:
    """One round of sampling within a step: this process's shard of `prompts_per_step`
    prompts (global prompts [first, first + len(examples))), their samples and scores,
    and what the gather made global."""

    examples: list[dict[str, Any]]
    first: int
    samples: list[Any]
    scores: list[tuple[float, dict[str, float]]]
    correct: list[bool]
    everyone: list[tuple[Any, bool, int, bool, int]]  # (B,) rows of every process, global order
    rewards: torch.Tensor  # (B,) global
    advantages: torch.Tensor  # (len(samples),) this shard's
    zero_std: torch.Tensor  # (prompts_per_step,) global: groups whose rewards are all equal
    seconds: dict[str, float]
    notes: list[dict[str, Any]]  # per sample: graders that gave no score, the judge's words


def _grpo_step(run: _Run, step: int) -> dict[str, float]:
    """One GRPO step: sample, score, compute advantages, update; returns its metrics.

    With DAPO's dynamic sampling, groups whose rewards are all equal carry no signal: new
    prompts are sampled (up to `max_refills` more rounds) until `prompts_per_step` groups
    with signal are in hand, and the update uses the first that many. With several
    processes each samples its shard of every round; the choice is made on gathered
    (global) rewards, so every process makes the same one.
    """
    cfg = run.config
    rounds = [_sample_round(run, step, 0)]
    while (cfg.dynamic_sampling and len(rounds) <= cfg.max_refills
           and sum(int((~r.zero_std).sum()) for r in rounds) < cfg.prompts_per_step):
        rounds.append(_sample_round(run, step, len(rounds)))
    samples, advantages = _training_rows(rounds, cfg)
    timings = {k: sum(r.seconds[k] for r in rounds) for k in rounds[0].seconds}
    metrics = {**timings, **_optimize(run, samples, advantages)}
    if cfg.ref_refresh_steps and run.ref_model is not None and step % cfg.ref_refresh_steps == 0:
        gathered = distributed.full_state(run.model, None, everywhere=True)  # a collective when sharded
        run.ref_model.load_state_dict(  # with everywhere=True every rank holds the weights
            cast("dict[str, Any]", gathered[0]) if gathered else run.model.state_dict())
    from engine.generation import with_stop_string

    everything: list[RolloutRecord] = []
    for k, r in enumerate(rounds):
        written = [with_stop_string(s, list(cfg.stop), run.tokenizer, run.eos) for s in r.samples]
        records = _records(step, r.samples, r.examples, r.scores, r.advantages, r.correct, run.detectors,
                           k * cfg.prompts_per_step + r.first, written)
        for record, note in zip(records, r.notes, strict=True):
            record.metadata.update(note)
        if k == 0:
            _attach_token_views(records[: cfg.token_details], r.samples, run.tokenizer)
        everything += distributed.gather_lists(records, run.world)
    run.sink.rollouts(everything)
    everyone = [row for r in rounds for row in r.everyone]
    metrics.update(behaviour_shares([set(r.metadata["behaviours"]) for r in everything], tuple(run.detectors)))
    metrics.update(_reward_metrics(everyone, torch.cat([r.rewards for r in rounds])))
    metrics["frac_zero_std_groups"] = float(torch.cat([r.zero_std for r in rounds]).float().mean())
    if cfg.dynamic_sampling:
        metrics["sampling_rounds"] = float(len(rounds))
        metrics["groups_trained"] = float(min(cfg.prompts_per_step, sum(int((~r.zero_std).sum()) for r in rounds)))
    metrics["_tokens"] = float(sum(row[2] + row[4] for row in everyone))
    return metrics


def _sample_round(run: _Run, step: int, index: int) -> _Round:
    """Take the next prompts, sample and score this process's shard of them (round `index`
    of the step: its random streams follow the prompts sampled before it)."""
    cfg, world, g = run.config, run.world, run.config.group_size
    batch = [run.train[i] for i in run.cursor.take(cfg.prompts_per_step)]  # the same on every rank
    first, stop = distributed.shard_range(len(batch), world.rank, world.size)
    examples = batch[first:stop]
    clock = time.perf_counter()
    samples = _generate(run, examples, step, index * cfg.prompts_per_step + first, stream=index == 0)
    seconds = {"time/generate": time.perf_counter() - clock}
    clock = time.perf_counter()
    scores = run.scorer.score_many([(s.text, _graded(examples[s.prompt_index], s, cfg)) for s in samples])
    notes = run.scorer.notes(len(samples))
    seconds["time/score"] = time.perf_counter() - clock
    correct = [run.scorer.correct(s.text, examples[s.prompt_index], comps, cfg.accuracy_reward)
               for s, (_, comps) in zip(samples, scores, strict=True)]
    shard = [(score, ok, len(s.completion_ids), s.finish_reason == "length", len(s.prompt_ids))
             for s, score, ok in zip(samples, scores, correct, strict=True)]
    everyone = distributed.gather_lists(shard, world)
    rewards = torch.tensor([row[0][0] for row in everyone], dtype=torch.float32)
    advantages = group_advantages(rewards, g, cfg.scale_rewards)[first * g : stop * g]
    zero_std = rewards.view(-1, g).std(dim=1) == 0
    return _Round(examples, first, samples, scores, correct, everyone, rewards, advantages, zero_std, seconds, notes)


def _training_rows(rounds: list[_Round], cfg: GRPOConfig) -> tuple[list[Any], torch.Tensor]:
    """This process's rows of the update: every row without dynamic sampling; with it, the
    rows of the first `prompts_per_step` groups (in round, then group order) with signal."""
    g = cfg.group_size
    if not cfg.dynamic_sampling:
        return rounds[0].samples, rounds[0].advantages
    chosen = [(k, j) for k, r in enumerate(rounds) for j in range(len(r.zero_std)) if not r.zero_std[j]]
    chosen_set = set(chosen[: cfg.prompts_per_step])
    samples: list[Any] = []
    advantages: list[torch.Tensor] = []
    for k, r in enumerate(rounds):
        rows = [i for i in range(len(r.samples)) if (k, r.first + i // g) in chosen_set]
        samples += [r.samples[i] for i in rows]
        advantages.append(r.advantages[rows])
    return samples, torch.cat(advantages)


def _graded(example: dict[str, Any], sample: Any, cfg: GRPOConfig) -> dict[str, Any]:
    """The example as graders see it: with the completion's token count and the length
    limit (read by the `length` rewards)."""
    return {**example, "completion_tokens": len(sample.completion_ids), "max_length": cfg.max_new_tokens}


def _generate(run: _Run, examples: list[dict[str, Any]], step: int, first: int = 0, stream: bool = True
              ) -> list[Any]:
    """Sample `group_size` completions per prompt, streaming a few to the sink live (when
    `stream`); `examples` start at index `first` of the step's prompts (the random streams
    follow it)."""
    from engine.generation import SamplingParams

    cfg = run.config
    prompts = [ex["text"] for ex in examples]
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                            stop=list(cfg.stop), seed=_step_seed(cfg.seed, step))

    def on_token(prompt_index: int, sample_index: int, text: str) -> None:
        if prompt_index == 0 and sample_index < cfg.stream_samples:
            run.sink.tokens(f"{step}-{sample_index}", text, step=step, prompt=prompts[0])

    streaming = stream and cfg.stream_samples and run.world.is_main  # the first prompt is rank 0's
    with distributed.full_parameters(run.model):  # ranks sample different numbers of tokens
        samples = run.generator.generate(prompts, cfg.group_size, params, on_token if streaming else None,
                                         first_prompt=first)
    for j in range(min(cfg.stream_samples, cfg.group_size) if stream else 0):
        run.sink.tokens(f"{step}-{j}", "", step=step, prompt=prompts[0], done=True)
    return samples


def _optimize(run: _Run, samples: list[Any], advantages: torch.Tensor) -> dict[str, float]:
    """`num_iterations` optimizer updates on one batch; the loss equals the full-batch loss
    whatever `micro_batch_size` is (each micro-batch is weighted by its share)."""
    cfg = run.config
    stats: dict[str, float] = {"lr": float(run.scheduler.get_last_lr()[0])}
    batches = _micro_batches(run, samples)
    # Normalisers of the global batch: every process weighs its rows by the global counts.
    counts = distributed.all_sum({"tokens": float(sum(b.mask.sum() for b, _ in batches)),
                                  "rows": float(len(samples))}, run.world)
    total_tokens, total_rows = counts["tokens"], counts["rows"]
    if total_rows == 0 or total_tokens == 0:
        run.sink.log("GRPO: no completion tokens to learn from this step; skipping the update.")
        return {**stats, "loss": 0.0, "grad_norm": 0.0, "clip_ratio": 0.0, "entropy": 0.0}
    clock = time.perf_counter()
    old = _old_logprobs(run, batches) if cfg.num_iterations > 1 else None
    ref = _reference_logprobs(run, batches) if cfg.beta > 0 else None
    stats["time/reference"] = time.perf_counter() - clock  # the frozen passes: reference and old policy
    stats["time/forward_backward"] = stats["time/optimizer"] = 0.0
    for iteration in range(cfg.num_iterations):
        clock = time.perf_counter()
        run.optimizer.zero_grad(set_to_none=True)
        # The same keys on every process (one may have no rows): they are summed across processes.
        acc = dict.fromkeys(["loss", "clip_ratio", "clip_ratio/low", "clip_ratio/high"]
                            + ["kl"] * (cfg.beta > 0) + ["entropy"] * (iteration == 0)
                            + list(_MISMATCH_KEYS) * (cfg.temperature == 1.0 and iteration == 0), 0.0)
        checkpointing = checkpointing_layers(run.model) if cfg.gradient_checkpointing else contextlib.nullcontext()
        measuring = expert_load(run.model) if iteration == 0 and run.moe else contextlib.nullcontext()
        with checkpointing, measuring as load:
            _train_pass(run, batches, advantages, old, ref, acc, iteration, total_tokens, total_rows)
        if load is not None:  # routed tokens of the first pass: every token of the batch once
            stats.update(load.metrics())
        acc = distributed.all_sum(acc, run.world)
        stats["time/forward_backward"] += time.perf_counter() - clock
        clock = time.perf_counter()
        acc["grad_norm"] = _clip_and_step(run)
        stats["time/optimizer"] += time.perf_counter() - clock
        if iteration == 0:  # report the first pass, as TRL does
            stats.update(acc)
    return stats


def _train_pass(run: _Run, batches: list[tuple[Batch, list[int]]], advantages: torch.Tensor,
                old: list[torch.Tensor] | None, ref: list[torch.Tensor] | None, acc: dict[str, float],
                iteration: int, total_tokens: float, total_rows: float) -> None:
    """Forward and backward over every micro-batch, accumulating gradients and `acc`."""
    cfg = run.config
    for k, item in enumerate(distributed.lockstep(batches, run.model, run.world)):
        if item is None:  # this rank is out of rows; the sharded model still needs its pass
            (sequence_logprobs(run.model, _dummy(run), cfg.temperature)[0].sum() * 0.0).backward()
            continue
        batch, rows = item
        logp, entropy = sequence_logprobs(run.model, batch, cfg.temperature, with_entropy=iteration == 0)
        loss, mb = policy_loss(
            logp, logp.detach() if old is None else old[k], None if ref is None else ref[k],
            advantages[rows].to(logp.device),
            batch.mask, loss_type=cfg.loss_type, epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high,
            beta=cfg.beta, max_completion_length=cfg.max_new_tokens,
            importance_sampling_level=cfg.importance_sampling_level,
            **_correction(cfg, batch, old is None and iteration == 0))
        share = float(batch.mask.sum()) / total_tokens
        weight = share if cfg.loss_type in ("bnpo", "dapo") else len(rows) / total_rows
        (loss * weight).backward()
        _accumulate(acc, mb, weight, share, entropy, batch.mask)


# Token means of the sampler/trainer mismatch (policy_loss's stats), logged on the first pass.
_MISMATCH_KEYS = ("mismatch/kl", "tis/weight_mean", "tis/capped")


def _correction(cfg: GRPOConfig, batch: Batch, first_pass: bool) -> dict[str, Any]:
    """policy_loss's sampler arguments: the sampler's log-probs (for the mismatch metrics,
    and as the importance-sampling base when `tis_cap` is on). Without TIS they are passed
    on the first pass only, where they cost nothing but the metrics."""
    if batch.sampler_logp is None or cfg.temperature != 1.0 or not (cfg.tis_cap or first_pass):
        return {}
    return {"sampler_logp": batch.sampler_logp, "tis_cap": cfg.tis_cap or None, "tis_mode": cfg.tis_mode}


_BUILDERS: dict[str, Callable[..., Batch]] = {"grouped": build_grouped_batch, "packed": build_packed_batch,
                                              "padded": build_token_batch}


def _layout(run: _Run, chunk: list[Any]) -> str:
    """The micro-batch layout: as configured, or for `auto` the one that computes fewer
    tokens. Packed rows hold every token once; grouped rows hold each distinct prompt once
    but pad every completion to the longest (packing must also beat the cost of its block
    mask, hence the margin). Several processes must run the same forwards, so they do not
    choose per batch."""
    cfg = run.config
    if cfg.batch_layout != "auto":
        return cfg.batch_layout
    # A checkpointed layer replays without the cache, so the grouped layout's shared prompt
    # cache is out: its completion rows would be replayed without their prompt.
    grouped_ok = cfg.share_prompt_cache and not cfg.gradient_checkpointing
    fallback = "grouped" if grouped_ok else "padded"
    if run.world.size > 1 or not run.packing_ok or not chunk:
        return fallback
    packed = sum(len(s.prompt_ids) + len(s.completion_ids) for s in chunk)
    longest = max(len(s.completion_ids) for s in chunk)
    if grouped_ok:
        prompts = {tuple(s.prompt_ids) for s in chunk}
        other = len(prompts) * max(len(p) for p in prompts) + len(chunk) * longest
    else:
        other = len(chunk) * max(len(s.prompt_ids) + len(s.completion_ids) for s in chunk)
    return "packed" if packed < 0.8 * other else fallback


def _micro_batches(run: _Run, samples: list[Any]) -> list[tuple[Batch, list[int]]]:
    """Token batches of at most `micro_batch_size` rows (overlong rows masked if asked)."""
    pad = pad_token_id(run.tokenizer)
    out: list[tuple[Batch, list[int]]] = []
    for rows in micro_batches(len(samples), run.config.micro_batch_size):
        chunk = [samples[i] for i in rows]
        build = _BUILDERS[_layout(run, chunk)]
        batch = build([s.prompt_ids for s in chunk], [s.completion_ids for s in chunk], pad, run.config.device)
        attach_sampler_logprobs(batch, [s.logprobs for s in chunk])
        if run.config.mask_truncated_completions:
            truncated = torch.tensor([s.finish_reason == "length" for s in chunk], device=batch.mask.device)
            batch.mask = batch.mask & ~truncated.unsqueeze(1)
        out.append((batch, rows))
    return out


def _old_logprobs(run: _Run, batches: list[tuple[Batch, list[int]]]) -> list[torch.Tensor]:
    """The sampling policy's log-probs for updates after the first: the sampler's own when
    they are the trainer's up to float rounding (or when asked), else a forward pass."""
    from engine.backends import resolve_backend

    cfg = run.config
    exact = (resolve_backend(cfg.generation_backend, run.model) == "torch" and cfg.temperature == 1.0
             and run.world.size == 1
             and all(p.dtype == torch.float32 for p in run.model.parameters()))
    from_sampler = [b.sampler_logp for b, _ in batches]
    if (cfg.old_logprobs == "sampler" or (cfg.old_logprobs == "auto" and exact)) and all(
            t is not None for t in from_sampler):
        return cast("list[torch.Tensor]", from_sampler)
    return _frozen_logprobs(run, run.model, batches)


def _reference_logprobs(run: _Run, batches: list[tuple[Batch, list[int]]]) -> list[torch.Tensor]:
    """The KL reference's log-probs: the base model (the policy with its LoRA adapter off),
    or the frozen copy, brought to the device for the passes when it is offloaded."""
    if run.base_reference:
        with cast("Any", run.model).disable_adapter():
            return _frozen_logprobs(run, run.model, batches)
    assert run.ref_model is not None
    if not run.config.ref_offload:
        return _frozen_logprobs(run, run.ref_model, batches)
    run.ref_model.to(run.config.device)
    try:
        return _frozen_logprobs(run, run.ref_model, batches)
    finally:
        run.ref_model.to("cpu")


def _frozen_logprobs(run: _Run, model: torch.nn.Module | None, batches: list[tuple[Batch, list[int]]]
                     ) -> list[torch.Tensor]:
    """Per-micro-batch log-probs under `model` without gradients (old or reference policy)."""
    assert model is not None
    with torch.no_grad():
        padded = distributed.lockstep([batch for batch, _ in batches], model, run.world)
        out = [sequence_logprobs(model, batch or _dummy(run), run.config.temperature)[0] for batch in padded]
    return out[: len(batches)]


def _dummy(run: _Run) -> Batch:
    """A one-token batch for the passes a rank runs only to keep a sharded model's
    collectives in step with the others."""
    pad = pad_token_id(run.tokenizer)
    build = _BUILDERS[_layout(run, [])]  # the layout every rank uses: as many forwards
    return build([[pad]], [[pad]], pad, run.config.device)


def _accumulate(acc: dict[str, float], mb: dict[str, float], weight: float, share: float,
                entropy: torch.Tensor | None, mask: torch.Tensor) -> None:
    """Fold one micro-batch's stats into batch-level ones (token stats weighted by tokens)."""
    acc["loss"] = acc.get("loss", 0.0) + mb["loss"] * weight
    for key in ("clip_ratio", "clip_ratio/low", "clip_ratio/high", "kl", *_MISMATCH_KEYS):
        if key in mb:
            acc[key] = acc.get(key, 0.0) + mb[key] * share
    if entropy is not None:
        m = mask.float()
        token_mean = float((entropy * m).sum() / m.sum().clamp(min=1.0))
        acc["entropy"] = acc.get("entropy", 0.0) + token_mean * share


def _clip_and_step(run: _Run) -> float:
    """Clip the gradient norm, step optimizer and schedule, push weights to the sampler."""
    params = [p for p in run.model.parameters() if p.requires_grad]
    distributed.sum_gradients(params, run.world)  # each process holds its share of the global loss
    limit = run.config.max_grad_norm if run.config.max_grad_norm > 0 else float("inf")
    grad_norm = distributed.scalar(torch.nn.utils.clip_grad_norm_(params, limit))
    run.optimizer.step()
    run.scheduler.step()
    run.generator.update_weights(run.model)
    return grad_norm


def _reward_metrics(rows: list[tuple[Any, bool, int, bool, int]], rewards: torch.Tensor) -> dict[str, float]:
    """Mean/std of every reward component and of the total, accuracy, lengths. `rows`:
    one `((total, components), correct, completion tokens, truncated, prompt tokens)` per
    completion of the step; `rewards` (B,) their totals."""
    out: dict[str, float] = {"reward/mean": float(rewards.mean()), "reward/std": float(rewards.std())}
    for name in rows[0][0][1]:
        values = torch.tensor([row[0][1][name] for row in rows])
        out[f"reward/{name}/mean"] = float(values.mean())
        out[f"reward/{name}/std"] = float(values.std())
    lengths = torch.tensor([row[2] for row in rows], dtype=torch.float32)
    out["accuracy"] = sum(row[1] for row in rows) / len(rows)
    out["response_length/mean"] = float(lengths.mean())
    out["response_length/max"] = float(lengths.max())
    out["truncated_ratio"] = sum(row[3] for row in rows) / len(rows)
    return out


def _records(step: int, samples: list[Any], examples: list[dict[str, Any]],
             scores: list[tuple[float, dict[str, float]]], advantages: torch.Tensor,
             correct: list[bool], detectors: dict[str, Any], first: int = 0,
             written: list[str] | None = None) -> list[RolloutRecord]:
    """One RolloutRecord per completion, with its reasoning/answer split (`first`: the
    index of `examples[0]` in the step's batch); stored as `written` (stop string kept)."""
    records = []
    for k, (s, (total, comps)) in enumerate(zip(samples, scores, strict=True)):
        ex = examples[s.prompt_index]
        reasoning, tail = split_reasoning(s.text)
        answer = extract_answer(s.text) or tail  # also reads an <answer> cut open by the stop string
        records.append(RolloutRecord(
            step=step, prompt=ex["text"], completion=written[k] if written else s.text, rewards=dict(comps),
            reward=total,
            sample_index=s.sample_index, reasoning=reasoning, answer=answer, reference=str(ex.get("answer", "")),
            token_count=len(s.completion_ids), finish_reason=s.finish_reason,
            metadata={"question": ex.get("prompt", ""), "example_id": ex.get("id"), "group": first + s.prompt_index,
                      "advantage": float(advantages[k]), "correct": correct[k],
                      "behaviours": sorted(behaviours(s.text, s.finish_reason, detectors))}))
    return records


def _attach_token_views(records: list[RolloutRecord], samples: list[Any], tokenizer: Any) -> None:
    """Each token's text and the sampler's log-prob in the records' metadata (`token_view`),
    for the token heatmap. The pieces add up to the completion: a character split across
    byte-level tokens shows in the token that completes it (`engine.textstream`)."""
    from engine.textstream import make_stream_factory

    factory = make_stream_factory(tokenizer)
    for record, sample in zip(records, samples, strict=False):
        stream = factory([])
        pieces = [stream.push(t)[0] for t in sample.completion_ids]
        if pieces:
            pieces[-1] += stream.flush()
        record.metadata["token_view"] = {"pieces": pieces, "logprobs": [round(float(x), 4) for x in sample.logprobs]}


def _evaluate(run: _Run) -> dict[str, float]:
    """Accuracy (pass@1 over `eval_samples` samples) and mean reward on held-out prompts."""
    from engine.generation import SamplingParams

    cfg, world = run.config, run.world
    held_out = run.test[: cfg.eval_examples]
    if not held_out:
        return {}
    first, stop = distributed.shard_range(len(held_out), world.rank, world.size)
    examples = held_out[first:stop]  # this process's share
    params = SamplingParams(temperature=cfg.eval_temperature, top_p=1.0 if cfg.eval_temperature == 0 else cfg.top_p,
                            max_new_tokens=cfg.max_new_tokens, stop=list(cfg.stop), seed=cfg.seed)
    with distributed.full_parameters(run.model):
        samples = run.generator.generate([ex["text"] for ex in examples], cfg.eval_samples, params,
                                         first_prompt=first)
    scores = run.scorer.score_many([(s.text, _graded(examples[s.prompt_index], s, cfg)) for s in samples])
    correct = [run.scorer.correct(s.text, examples[s.prompt_index], comps, cfg.accuracy_reward)
               for s, (_, comps) in zip(samples, scores, strict=True)]
    sums = distributed.all_sum({"correct": float(sum(correct)), "reward": sum(total for total, _ in scores),
                                "length": float(sum(len(s.completion_ids) for s in samples)),
                                "n": float(len(samples))}, world)
    return {"eval/accuracy": sums["correct"] / sums["n"], "eval/reward": sums["reward"] / sums["n"],
            "eval/response_length": sums["length"] / sums["n"]}


def _save(run: _Run) -> None:
    """Checkpoint policy, optimiser, schedule, data position (and reference model); with
    several processes rank 0 writes it (they all hold the same state)."""
    path = Path(run.config.output_dir) / f"checkpoint-{run.step}"
    gathered = distributed.full_state(run.model, run.optimizer)  # a collective when sharded
    if run.world.is_main:
        record = save_stage_checkpoint(path, run.model, run.tokenizer, step=run.step, optimizer=run.optimizer,
                                       scheduler=run.scheduler, data_state=_data_state(run),
                                       config=run.config.to_dict(), full_state=gathered)
        if run.ref_model is not None:
            # The reference may be a refreshed copy of the policy: keep it for an exact resume.
            torch.save(run.ref_model.state_dict(), path / REF_FILE)
        run.sink.checkpoint(record)
    distributed.barrier(run.world)
    run.last_checkpoint = str(path)


def _judge(config: GRPOConfig) -> dict[str, Any]:
    """The `judge` reward when the config names a judging model."""
    if not config.judge:
        return {}
    from engine.judge import Judge

    return {"judge": Judge.load(config.judge, device=config.device, dtype=config.dtype)}


def _adapter_off_reference(model: torch.nn.Module, config: GRPOConfig) -> bool:
    """Whether the KL reference can be the policy itself with its LoRA adapter switched off:
    the base weights never change under LoRA, so no second copy is needed (unless the
    reference is refreshed from the policy, which then needs a copy of its own)."""
    return config.lora is not None and not config.ref_refresh_steps and hasattr(model, "disable_adapter")


def _data_state(run: _Run) -> dict[str, Any]:
    """Where the data stands, for an exact resume: the cursor, and the curriculum's level."""
    state: dict[str, Any] = {"cursor": run.cursor.state()}
    if run.curriculum is not None:
        state["curriculum"] = run.curriculum.state()
    return state


def _reference_model(model: torch.nn.Module, resume_from: str | Path | None, config: GRPOConfig) -> torch.nn.Module:
    """A frozen copy of the policy (restored from the checkpoint when resuming), in CPU
    memory when `ref_offload` is on."""
    ref = copy.deepcopy(model)
    saved = Path(resume_from) / REF_FILE if resume_from is not None else None
    if saved is not None and saved.exists():
        ref.load_state_dict(torch.load(saved, map_location="cpu", weights_only=True))
    ref.requires_grad_(False)
    if config.ref_offload:
        ref.to("cpu")
    return ref.eval()


def _load_prompts(config: GRPOConfig, tokenizer: Any, task: Any, level: int | None = None, *,
                  with_test: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and test examples, each with `text`: the prompt as the model sees it. With a
    curriculum, train is at `level`; test stays at the task's own options, so evaluations
    along the run compare."""
    if task is not None:
        train = task.examples("train", config.train_examples, level=level) if level is not None else \
            task.examples("train", config.train_examples)
        test = task.examples("test", config.eval_examples) if config.eval_examples and with_test else []
    else:
        from engine.datasets import load_examples

        assert config.dataset is not None
        train = list(load_examples(config.dataset, columns=config.columns))
        test = list(load_examples(config.eval_dataset, columns=config.columns)) if config.eval_dataset else []
    for ex in train + test:
        ex["text"] = format_prompt(ex["prompt"], tokenizer, style=config.prompt_style,
                                   prefill_think=config.prefill_think)
        ex["think_prefilled"] = config.prefill_think  # the format reward then expects no <think>
    return train, test


def _task(config: GRPOConfig) -> Any:
    """The built-in task object, or None for a dataset run."""
    if config.task is None:
        return None
    from engine import tasks

    return tasks.get(config.task, **config.task_options)


def _step_seed(seed: int, step: int) -> int:
    """A sampling seed per step: a resumed run samples exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + step) % 2**62


def _every(n: int, step: int) -> bool:
    return n > 0 and step % n == 0


def _result(run: _Run, status: str, final: dict[str, float] | None = None) -> StageResult:
    last = dict(run.history[-1]) if run.history else {}
    last.update(final or {})
    last.pop("step", None)
    return StageResult(status=status, step=run.step, checkpoint=run.last_checkpoint, metrics=last,
                       history=run.history)
