"""Sampling throughput of Ponder's torch generation backend against transformers'
`model.generate`, and of the vLLM backend against the torch backend, on the same model,
prompts and lengths, each pair measured in the same run.

    .venv/bin/python benchmarks/bench_generation.py                  # the dense starter (built if needed)
    .venv/bin/python benchmarks/bench_generation.py --model starter-moe --rounds 5
    .venv/bin/python benchmarks/bench_generation.py --compile        # vLLM also with torch.compile
    python benchmarks/bench_generation.py --device cuda --dtype bfloat16 --shape qwen2.5-0.5b   # on a GPU

On a GPU it also measures `model.generate` with a static cache (compiled, CUDA graphs).

Workload: 64 completions (8 arithmetic prompts x 8 samples), up to 128 new tokens,
temperature 1.0. Two scenarios:
- "natural": completions end at EOS, as in GRPO rollouts (tokens counted up to EOS);
- "fixed": EOS ignored on both sides, every completion is 128 tokens.
Rounds alternate the two implementations; the median of each is reported.

`--shape` swaps the starter's weights for a randomly initialised model of a real model's
shape (with the starter's tokenizer): the speed of a model that size, not its text.

The vLLM part runs in var/vllm-venv (`make vllm`; vLLM pins its own torch and
transformers), where this script re-runs itself with `--vllm`: there the torch backend is
the baseline, measured in the same process. It is skipped, saying so, without that venv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.generation import SamplingParams, TorchGenerator  # noqa: E402
from engine.models import load_model, load_tokenizer  # noqa: E402
from engine.tasks import get as get_task  # noqa: E402
from engine.tasks.templates import r1_zero_prompt  # noqa: E402

PROMPTS, SAMPLES, MAX_NEW = 8, 8, 128
# Layer shapes of released models (hidden, layers, heads, kv heads, MLP width).
SHAPES = {"qwen2.5-0.5b": (896, 24, 14, 2, 4864), "qwen2.5-1.5b": (1536, 28, 12, 2, 8960)}
VLLM_PYTHON = ROOT / "var" / "vllm-venv" / "bin" / "python"


def ours(model, tokenizer, prompts: list[str], ignore_eos: bool, seed: int) -> tuple[int, float]:
    """(completion tokens, seconds) for the torch backend."""
    return timed(TorchGenerator(model, tokenizer, ignore_eos=ignore_eos), prompts, seed)


def timed(gen, prompts: list[str], seed: int) -> tuple[int, float]:
    """(completion tokens, seconds) of one batch from generator `gen`."""
    start = time.perf_counter()
    samples = gen.generate(prompts, SAMPLES, SamplingParams(max_new_tokens=MAX_NEW, seed=seed))
    return sum(len(s.completion_ids) for s in samples), time.perf_counter() - start


def baseline(model, tokenizer, prompts: list[str], ignore_eos: bool, seed: int, **generate_kw) -> tuple[int, float]:
    """(completion tokens up to and including EOS, seconds) for `model.generate`."""
    batch = tokenizer([p for p in prompts for _ in range(SAMPLES)], return_tensors="pt", padding=True,
                      padding_side="left").to(model.device)
    eos = None if ignore_eos else tokenizer.eos_token_id
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=MAX_NEW,
                             eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **generate_kw)
    if out.is_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1]:]
    if eos is None:
        return new.numel(), seconds
    ended = (new == eos).int()
    first = torch.where(ended.any(1), ended.argmax(1) + 1, torch.full_like(ended[:, 0], new.shape[1]))
    return int(first.sum()), seconds


def static_compiled(model, tokenizer, prompts: list[str], ignore_eos: bool, seed: int) -> tuple[int, float]:
    """`model.generate` with a static KV cache, which transformers compiles (CUDA graphs)
    on a GPU; the first call, excluded as warm-up, pays the compilation."""
    return baseline(model, tokenizer, prompts, ignore_eos, seed, cache_implementation="static")


def measure(fns: dict, model, tokenizer, prompts: list[str], ignore_eos: bool, rounds: int) -> dict[str, float]:
    """Median tokens/s of each function in `fns`, rounds alternating between them."""
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            tokens, seconds = fn(model, tokenizer, prompts, ignore_eos, seed=r)
            if r > 0:  # round 0 warms up every implementation
                rates[name].append(tokens / seconds)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
    return {name: statistics.median(values) for name, values in rates.items()}


def vllm_versus_torch(model, tokenizer, prompts: list[str], args: argparse.Namespace) -> None:
    """vLLM backend (eager, and compiled with --compile) against the torch backend."""
    from engine.generation_vllm import VLLMGenerator

    for eager in (True, False) if args.compile else (True,):
        start = time.perf_counter()
        gen = VLLMGenerator(model, tokenizer, enforce_eager=eager)
        started = time.perf_counter() - start
        start = time.perf_counter()
        gen.update_weights(model)
        print(f"vLLM {'eager' if eager else 'compiled'}: start-up {started:.1f} s, "
              f"weight update {1000 * (time.perf_counter() - start):.0f} ms")

        def vllm(model, tokenizer, prompts, ignore_eos, seed, gen=gen):
            gen.ignore_eos = ignore_eos  # read per call
            return timed(gen, prompts, seed)

        for label, ignore_eos in (("natural (stop at EOS)", False), ("fixed 128 tokens", True)):
            got = measure({"vllm": vllm, "torch": ours}, model, tokenizer, prompts, ignore_eos, args.rounds)
            print(f"{label:22s} vLLM {'eager' if eager else 'compiled':8s} {got['vllm']:8.0f} tok/s   "
                  f"torch backend {got['torch']:8.0f} tok/s   ratio {got['vllm'] / got['torch']:.2f}x")


def shaped_model(shape: str, tokenizer, dtype: str, device: str):
    """A random Qwen2 with the layer shapes of `shape` and `tokenizer`'s vocabulary."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from engine.models import DTYPES

    hidden, layers, heads, kv_heads, mlp = SHAPES[shape]
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=mlp,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(device=device, dtype=DTYPES[dtype]).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="starter", help="model id or path (default: the dense starter)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also measure vLLM with torch.compile (slow start)")
    parser.add_argument("--vllm", action="store_true", help="only vLLM against the torch backend (needs vLLM)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="a random model of this shape instead of --model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    if args.shape:
        model = shaped_model(args.shape, tokenizer, args.dtype, args.device)
    else:
        model = load_model(args.model, dtype=args.dtype, device=args.device)
    prompts = [r1_zero_prompt(e["prompt"]) for e in get_task("arithmetic").examples("test", PROMPTS)]
    if args.vllm:
        vllm_versus_torch(model, tokenizer, prompts, args)
        return
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{args.threads} threads"
    print(f"{SAMPLES * PROMPTS} completions x up to {MAX_NEW} tokens, temperature 1.0, {where}, "
          f"model {args.shape or args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M, {args.dtype}), "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, ignore_eos in (("natural (stop at EOS)", False), ("fixed 128 tokens", True)):
        fns = {"ours": ours, "generate": baseline}
        if args.device.startswith("cuda"):
            fns["static"] = static_compiled
        got = measure(fns, model, tokenizer, prompts, ignore_eos, args.rounds)
        print(f"{label:22s} torch backend {got['ours']:8.0f} tok/s   model.generate {got['generate']:8.0f} tok/s   "
              f"ratio {got['ours'] / got['generate']:.2f}x   (load average {os.getloadavg()[0]:.1f})")
        if "static" in got:
            print(f"{'':22s} model.generate, static cache + compiled {got['static']:8.0f} tok/s   "
                  f"torch backend / that {got['ours'] / got['static']:.2f}x")
    if args.device != "cpu" or args.shape:
        return
    if not VLLM_PYTHON.exists():
        print("vLLM backend: skipped (no var/vllm-venv; `make vllm` builds it)")
        return
    sys.stdout.flush()
    subprocess.run([str(VLLM_PYTHON), __file__, "--vllm", *sys.argv[1:]], check=True)


if __name__ == "__main__":
    main()
