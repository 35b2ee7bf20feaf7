"""Memory and time of a run before it starts, and defaults scaled to the model.

    shape = model_shape("Qwen/Qwen2.5-0.5B")            # from config.json alone: no weights read
    estimate("grpo", {"lora": {"r": 16}, "beta": 0.04}, shape, rates()).lines()
    suggested_defaults("grpo", {"task": None}, shape)     # {"learning_rate": (1e-06, "494M parameters, full ...")}

The figures are rough by design (what a launch form can say in a second): memory counts
weights, gradients, AdamW's two moments, the KL reference, training activations, the
completion logits and the sampler's KV cache; time counts FLOPs (2 per parameter per token
forward, 4 more backward) at the measured matmul rate, and sampling as bound by reading
the weights once per decoded token. `benchmarks/bench_estimate.py` checks them against
real runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ASSUMED_PROMPT_TOKENS = 200  # a typical formatted math prompt (system text + question)
TRAINING_EFFICIENCY = 0.7  # share of the matmul rate a training pass reaches (bench_grpo_scale: 73%)
# Seconds per layer per decoded token that are neither FLOPs nor weight reads (Python, kernel
# launches, small ops), fitted by bench_estimate.py; LoRA's extra modules add about 40%.
DECODE_OVERHEAD = {"cpu": 8e-4, "cuda": 1e-4}
LORA_DECODE_FACTOR = 1.4
TRAINING_STAGES = ("grpo", "sft", "distill")
SAMPLING_STAGES = ("grpo", "eval", "rejection", "distill")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of an architecture."""

    parameters: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_width: int  # key/value heads x head dim: one token's K (or V) per layer
    linear_shapes: tuple[tuple[int, int], ...]  # (in, out) of every nn.Linear but the output head
    architecture: str

    def lora_parameters(self, r: int) -> int:
        """Trainable parameters of a rank-r adapter on every linear layer ("all-linear")."""
        return sum(r * (i + o) for i, o in self.linear_shapes)


@dataclass(frozen=True)
class Rates:
    """Throughput the time estimate assumes, and where it came from."""

    flops: float  # matmul FLOP/s in the run's dtype
    bandwidth: float  # bytes/s of memory reads
    source: str
    kind: str = "cpu"  # the device kind: cpu or cuda


@dataclass
class Estimate:
    memory: dict[str, int]  # device bytes by part
    host_memory: int  # bytes kept in CPU memory (an offloaded reference)
    seconds: dict[str, float]  # per step (GRPO, SFT) or for the whole stage (eval, rejection)
    parameters: int
    trainable: int
    notes: list[str]

    @property
    def total_memory(self) -> int:
        return sum(self.memory.values())

    def lines(self) -> list[str]:
        """The estimate as a launch form shows it."""
        parts = ", ".join(f"{k} {gib(v)}" for k, v in self.memory.items() if v)
        out = [f"Memory on the device: about {gib(self.total_memory)} ({parts})."]
        if self.host_memory:
            out.append(f"CPU memory for the offloaded reference: {gib(self.host_memory)}.")
        if self.seconds:
            out.append("Time: about " + ", ".join(f"{k} {duration(v)}" for k, v in self.seconds.items()) + ".")
        return out + self.notes

    def to_dict(self) -> dict[str, Any]:
        return {"memory": self.memory, "total_memory": self.total_memory, "host_memory": self.host_memory,
                "seconds": self.seconds, "parameters": self.parameters, "trainable": self.trainable,
                "lines": self.lines()}


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def duration(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def parameters_text(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


@functools.lru_cache(maxsize=64)
def _shape_of(path: str, stamp: float) -> ModelShape:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):  # the modules without their weights: exact counts, no memory
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    head = model.get_output_embeddings()
    linears = tuple((m.in_features, m.out_features) for m in model.modules()
                    if isinstance(m, torch.nn.Linear) and m is not head)
    heads = getattr(text, "num_attention_heads", 1)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()), layers=text.num_hidden_layers,
        hidden=text.hidden_size, intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        vocab=text.vocab_size, kv_width=(getattr(text, "num_key_value_heads", None) or heads) * head_dim,
        linear_shapes=linears, architecture=type(model).__name__)


def model_shape(path_or_name: str | Path) -> ModelShape:
    """The shape of a local folder's or a cached Hub model's architecture, read from its
    config alone (never downloaded: OSError when it is not on this machine)."""
    path = Path(path_or_name)
    stamp = (path / "config.json").stat().st_mtime if (path / "config.json").exists() else 0.0
    return _shape_of(str(path_or_name), stamp)


@functools.lru_cache(maxsize=4)
def rates(device: str = "cpu", dtype: str = "float32") -> Rates:
    """This machine's matmul rate and memory bandwidth on `device`, measured in about a
    tenth of a second; for a CUDA device this process cannot see, an A100-class guess."""
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        return Rates(flops=150e12 if dtype != "float32" else 19e12, bandwidth=1.5e12,
                     source="assumed for an A100-class GPU (this web process sees none)", kind="cuda")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if kind == "cpu":
        torch_dtype = torch.float32  # CPUs run half types through float32 kernels or slower
    a = torch.randn(1024, 1024, device=device, dtype=torch_dtype)
    flops = _timed(lambda: a @ a, 2 * 1024**3, device)
    big = torch.empty(64 * 2**20 // 4, device=device)
    bandwidth = _timed(lambda: big.clone(), 2 * big.numel() * 4, device)  # one read, one write
    return Rates(flops=flops, bandwidth=bandwidth, source=f"measured on this machine's {kind}", kind=kind)


def _timed(fn: Any, work: float, device: str) -> float:
    """Work per second of `fn`, best of a few repeats (after a warm-up)."""
    fn()
    best = math.inf
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return work / max(best, 1e-9)


def stage_defaults(stage: str) -> dict[str, Any]:
    """The stage config's field defaults (without building one: some need a model named)."""
    from engine import stages

    out = {}
    for f in dataclasses.fields(stages.get(stage).config):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def estimate(stage: str, config: Mapping[str, Any], shape: ModelShape, speed: Rates,
             prompt_tokens: int = ASSUMED_PROMPT_TOKENS) -> Estimate:
    """Device memory and time of `stage` run with `config` (the stage's fields; missing ones
    take the stage's defaults) on a model of `shape`."""
    cfg = {**stage_defaults(stage), **config}
    b = BYTES.get(cfg.get("dtype", "float32"), 4)
    lora = cfg.get("lora")
    trainable = shape.lora_parameters(int(lora.get("r", 8))) if lora else shape.parameters
    memory = {"weights": shape.parameters * b}
    seconds: dict[str, float] = {}
    notes = [f"{parameters_text(shape.parameters)} parameters ({shape.architecture}), "
             + (f"{parameters_text(trainable)} trainable (LoRA)" if lora else "all trainable") + "."]
    host = 0
    if stage in TRAINING_STAGES:
        memory["gradients"] = trainable * b
        memory["optimizer"] = 2 * trainable * (4 if lora else b)  # AdamW moments (LoRA adapters in fp32)
    if stage == "grpo":
        host = _grpo(cfg, shape, speed, b, trainable, prompt_tokens, memory, seconds, notes)
    elif stage == "sft":
        _sft(cfg, shape, speed, b, trainable, memory, seconds)
    elif stage in ("eval", "rejection"):
        _sampling_stage(cfg, shape, speed, b, prompt_tokens, memory, seconds)
    notes.append(f"Prompts assumed {prompt_tokens} tokens and completions full length; rates "
                 f"{speed.flops / 1e9:.0f} GFLOP/s, {speed.bandwidth / 1e9:.0f} GB/s, {speed.source}.")
    return Estimate(memory=memory, host_memory=host, seconds=seconds, parameters=shape.parameters,
                    trainable=trainable, notes=notes)


def _grpo(cfg: dict[str, Any], shape: ModelShape, speed: Rates, b: int, trainable: int, prompt_tokens: int,
          memory: dict[str, int], seconds: dict[str, float], notes: list[str]) -> int:
    """GRPO's parts: reference, activations, logits, KV cache; sampling and training time.
    Returns the host bytes of an offloaded reference."""
    rows = cfg["prompts_per_step"] * cfg["group_size"]
    new = cfg["max_new_tokens"]
    length = prompt_tokens + new
    host = 0
    if cfg["beta"] > 0:
        if cfg["lora"] and not cfg["ref_refresh_steps"]:
            notes.append("The KL reference is the policy with its adapter off: no second copy.")
        elif cfg["ref_offload"]:
            host = shape.parameters * b
        else:
            memory["reference"] = shape.parameters * b
    micro = min(cfg["micro_batch_size"], rows)
    memory["activations"] = _activations(shape, micro * length, b, cfg["gradient_checkpointing"])
    memory["logits"] = micro * new * shape.vocab * b  # only the completion positions are kept
    chunk = min(rows, 512)  # TorchGenerator's max_batch_rows
    memory["kv_cache"] = chunk * length * shape.layers * 2 * shape.kv_width * b
    sample_flops = 2 * shape.parameters * (rows * new + cfg["prompts_per_step"] * prompt_tokens)
    weight_reads = new * math.ceil(rows / chunk) * shape.parameters * b / speed.bandwidth
    overhead = new * math.ceil(rows / chunk) * shape.layers * DECODE_OVERHEAD[speed.kind]
    seconds["sampling"] = (max(sample_flops / speed.flops, weight_reads) + overhead) * (
        LORA_DECODE_FACTOR if cfg["lora"] else 1.0)
    # The grouped layout (the default) computes each prompt once per group.
    tokens = rows * new + (cfg["prompts_per_step"] if cfg["share_prompt_cache"] else rows) * prompt_tokens
    per_token = (4 if cfg["lora"] else 6) * shape.parameters  # LoRA skips the base weights' gradients
    if cfg["gradient_checkpointing"]:
        per_token += 2 * shape.parameters  # one more forward in the backward pass
    frozen = 2 * shape.parameters * tokens * ((cfg["beta"] > 0) + (cfg["num_iterations"] > 1))
    train_flops = cfg["num_iterations"] * per_token * tokens + frozen
    seconds["training"] = train_flops / (speed.flops * TRAINING_EFFICIENCY)
    seconds["per step"] = seconds["sampling"] + seconds["training"]
    seconds[f"{cfg['steps']} steps"] = seconds["per step"] * cfg["steps"]
    return host


def _sft(cfg: dict[str, Any], shape: ModelShape, speed: Rates, b: int, trainable: int,
         memory: dict[str, int], seconds: dict[str, float]) -> None:
    micro = min(cfg["micro_batch_size"], cfg["batch_size"])
    memory["activations"] = _activations(shape, micro * cfg["max_length"], b, cfg["gradient_checkpointing"])
    memory["logits"] = micro * cfg["max_length"] * shape.vocab * b
    per_token = (4 if cfg["lora"] else 6) * shape.parameters + 2 * shape.parameters * cfg["gradient_checkpointing"]
    seconds["per step"] = per_token * cfg["batch_size"] * cfg["max_length"] / (speed.flops * TRAINING_EFFICIENCY)


def _sampling_stage(cfg: dict[str, Any], shape: ModelShape, speed: Rates, b: int, prompt_tokens: int,
                    memory: dict[str, int], seconds: dict[str, float]) -> None:
    n = int(cfg.get("k") or cfg.get("samples") or 1)
    prompts = int(cfg.get("num_prompts") or cfg.get("eval_examples") or 100)
    new = cfg["max_new_tokens"]
    chunk = min(prompts * n, 512)
    memory["kv_cache"] = chunk * (prompt_tokens + new) * shape.layers * 2 * shape.kv_width * b
    flops = 2 * shape.parameters * prompts * (n * new + prompt_tokens)
    reads = new * math.ceil(prompts * n / chunk) * shape.parameters * b / speed.bandwidth
    overhead = new * math.ceil(prompts * n / chunk) * shape.layers * DECODE_OVERHEAD[speed.kind]
    seconds[f"sampling {prompts} prompts x {n}"] = max(flops / speed.flops, reads) + overhead


def _activations(shape: ModelShape, tokens: int, b: int, checkpointing: bool) -> int:
    """Bytes kept for the backward pass: per token and layer about 12 hidden-wide values
    (norms, q/k/v, attention output, residuals) and 4 MLP-wide ones (gate, up, their
    product, the activation); with checkpointing only each layer's input, plus one layer
    while it is replayed."""
    per_layer = tokens * (12 * shape.hidden + 4 * shape.intermediate) * b
    if checkpointing:
        return shape.layers * tokens * shape.hidden * b + per_layer
    return shape.layers * per_layer


# ----------------------------------------------------------------------------
# Defaults scaled to the model
# ----------------------------------------------------------------------------

# Peak learning rate for full fine-tuning by model size: the starter's measured best (docs/
# benchmarks.md), then the values GRPO recipes use (TRL's default 1e-6 for 0.5B-7B models;
# R1-Zero 3e-6 at 671B with a far larger batch). LoRA wants about 10x ("LoRA Without Regret").
LEARNING_RATES = ((20e6, 2e-4), (200e6, 1e-5), (math.inf, 1e-6))
LORA_LR_FACTOR = 10
# Completion length by task: the starter writes short answers; real models reason at length.
LENGTHS = {"starter": 64, "arithmetic": 256, "countdown": 512, "reasoning_gym": 512, "python": 768, "dataset": 1024}


def suggested_defaults(stage: str, config: Mapping[str, Any], shape: ModelShape) -> dict[str, tuple[Any, str]]:
    """{field: (value, why)} for the settings whose good value depends on the model:
    GRPO's and SFT's learning rate, GRPO's completion length."""
    if stage not in ("grpo", "sft") or (stage == "sft" and shape.parameters < LEARNING_RATES[0][0]):
        return {}  # SFT's own defaults are the starter's
    lora = bool(config.get("lora"))
    size = parameters_text(shape.parameters)
    lr = next(rate for limit, rate in LEARNING_RATES if shape.parameters < limit)
    if stage == "sft":
        lr *= 5  # supervised steps are denser than policy-gradient ones
    why = f"{size} parameters, " + ("LoRA (10x a full fine-tune's)" if lora else "full fine-tune")
    out: dict[str, tuple[Any, str]] = {"learning_rate": (float(f"{lr * (LORA_LR_FACTOR if lora else 1):.1e}"), why)}
    if stage == "grpo":
        task = config.get("task")
        kind = ("starter" if shape.parameters < 20e6 else "dataset" if not task
                else "reasoning_gym" if str(task).startswith("reasoning_gym:") else str(task))
        if kind in LENGTHS:
            reason = "the starter's short answers" if kind == "starter" else (
                "reasoning on a dataset" if kind == "dataset" else f"reasoning on {task}")
            out["max_new_tokens"] = (LENGTHS[kind], f"{size} parameters, {reason}")
    return out
