"""Exercises the vLLM backend inside var/vllm-venv (the main venv has no vLLM) and writes
what it saw as JSON; tests/engine/test_generation_vllm.py runs it and asserts on it.

    var/vllm-venv/bin/python tests/engine/vllm_probe.py generation MODEL_DIR OUT.json
    var/vllm-venv/bin/python tests/engine/vllm_probe.py grpo MODEL_DIR OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.backends import make_generator  # noqa: E402
from engine.generation import Sample, SamplingParams  # noqa: E402
from engine.models import load_model, load_tokenizer  # noqa: E402
from engine.tasks.templates import r1_zero_prompt  # noqa: E402

PROMPTS = [r1_zero_prompt("Tom has 3 apples. Tom buys 5 more. How many apples does Tom have now?"),
           r1_zero_prompt("Ann has 9 pens. Ann loses 2. How many pens does Ann have now?"),
           "short"]
SAMPLED = SamplingParams(max_new_tokens=24, seed=3, stop=["="])
GREEDY = SamplingParams(temperature=0, max_new_tokens=16)


def forward_logprobs(model: Any, sample: Sample) -> list[float]:
    """Log-probs of the sample's completion by one plain forward pass (transformers)."""
    ids = torch.tensor([sample.prompt_ids + sample.completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    start = len(sample.prompt_ids) - 1
    return [logp[start + k, t].item() for k, t in enumerate(sample.completion_ids)]


def as_json(samples: list[Sample], model: Any = None) -> list[dict[str, Any]]:
    """The samples, with the forward pass's log-probs of their tokens when `model` is given."""
    return [{"prompt": s.prompt_index, "sample": s.sample_index, "prompt_ids": s.prompt_ids,
             "ids": s.completion_ids, "text": s.text, "logprobs": s.logprobs, "finish": s.finish_reason,
             "reference": forward_logprobs(model, s) if model is not None else None} for s in samples]


def one_optimizer_step(model: Any, tokenizer: Any) -> None:
    """A large language-modelling step on one sentence: the greedy outputs must move."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    ids = torch.tensor([tokenizer("Tom has 7 apples. 7 + 7 = 14")["input_ids"]])
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()


def probe_generation(model_dir: str) -> dict[str, Any]:
    torch.manual_seed(0)
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    rng_before = torch.get_rng_state()
    start = time.perf_counter()
    gen = make_generator("vllm", model, tokenizer, kv_cache_bytes=256 << 20)
    out: dict[str, Any] = {"start_s": time.perf_counter() - start,
                           "rng_kept": bool(torch.equal(rng_before, torch.get_rng_state()))}
    torch.set_num_threads(1)
    out["threads_settable"] = torch.get_num_threads() == 1
    torch.set_num_threads(2)
    out["sampled"] = as_json(gen.generate(PROMPTS, 3, SAMPLED), model)
    out["again"] = as_json(gen.generate(PROMPTS, 3, SAMPLED))
    out["shard"] = as_json(gen.generate(PROMPTS[1:], 3, SAMPLED, first_prompt=1))
    streamed: dict[str, str] = defaultdict(str)

    def on_token(p: int, j: int, text: str) -> None:
        streamed[f"{p}-{j}"] += text

    out["streamed_samples"] = as_json(gen.generate(PROMPTS, 3, SAMPLED, on_token=on_token))
    out["streamed"] = dict(streamed)
    out["greedy"] = as_json(gen.generate(PROMPTS, 1, GREEDY), model)
    out["torch_greedy"] = as_json(make_generator("torch", model, tokenizer).generate(PROMPTS, 1, GREEDY))
    original = {k: v.clone() for k, v in model.state_dict().items()}
    one_optimizer_step(model, tokenizer)
    start = time.perf_counter()
    gen.update_weights(model)
    out["update_s"] = time.perf_counter() - start
    out["stepped"] = as_json(gen.generate(PROMPTS, 1, GREEDY), model)
    out["torch_stepped"] = as_json(make_generator("torch", model, tokenizer).generate(PROMPTS, 1, GREEDY))
    model.load_state_dict(original)
    gen.update_weights(model)
    out["restored"] = as_json(gen.generate(PROMPTS, 1, GREEDY))
    return out


def probe_grpo(model_dir: str, out_dir: str) -> dict[str, Any]:
    """Two GRPO steps of a LoRA policy sampled by vLLM. Whenever the run reports metrics
    (after each optimizer step) the engine's greedy log-probs are compared with the policy's."""
    import engine.generation_vllm as backend
    from engine.config import GRPOConfig
    from engine.events import RecordingSink
    from engine.grpo import run_grpo

    generators: list[Any] = []

    class WatchedGenerator(backend.VLLMGenerator):
        """The real backend, remembering the policy it was last given."""

        def __init__(self, model: Any, tokenizer: Any, **kw: Any) -> None:
            super().__init__(model, tokenizer, **kw)
            self.policy = model
            generators.append(self)

        def update_weights(self, model: Any) -> None:
            super().update_weights(model)
            self.policy = model

    class WatchingSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[dict[str, Any]] = []

        def metrics(self, step: int, values: dict[str, float]) -> None:
            super().metrics(step, values)
            gen = generators[-1]
            greedy = gen.generate(PROMPTS[:2], 1, SamplingParams(temperature=0, max_new_tokens=16, seed=0))
            self.seen.append({"step": step, "greedy": as_json(greedy, gen.policy)})

    backend.VLLMGenerator = WatchedGenerator  # make_generator imports it when asked for "vllm"
    config = GRPOConfig(model=model_dir, output_dir=out_dir, task="arithmetic", train_examples=16, eval_examples=4,
                        rewards={"task": 1.0, "format": 0.5}, group_size=4, prompts_per_step=2, max_new_tokens=16,
                        steps=2, micro_batch_size=8, learning_rate=5e-3, seed=1, eval_every=0,
                        generation_backend="vllm", lora={"r": 8})  # the engine serves the merged model
    sink = WatchingSink()
    start = time.perf_counter()
    result = run_grpo(config, sink)
    return {"run_s": time.perf_counter() - start, "status": result.status, "history": result.history,
            "seen": sink.seen}


def main() -> None:
    mode, model_dir, out_path = sys.argv[1:4]
    torch.set_num_threads(2)
    if mode == "generation":
        result = probe_generation(model_dir)
    else:
        result = probe_grpo(model_dir, str(Path(out_path).with_suffix("")) + "-run")
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
