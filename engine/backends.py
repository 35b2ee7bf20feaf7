"""The generation backends behind one factory: the torch sampler (`engine.generation`)
or vLLM (`engine.generation_vllm`, an optional extra imported only when asked for).

    gen = make_generator("torch", model, tokenizer)
"""

from __future__ import annotations

import importlib.util
from typing import Any

from engine.generation import Generator, TorchGenerator

BACKENDS = ("torch", "vllm", "auto")


def resolve_backend(backend: str, model: Any) -> str:
    """"auto" is vLLM for a model on a GPU where vLLM is installed, else the torch sampler
    (on CPUs and for small models its per-step scheduling costs more than it saves,
    docs/benchmarks.md "Generation backends")."""
    if backend != "auto":
        return backend
    on_gpu = any(p.is_cuda for p in model.parameters())
    return "vllm" if on_gpu and importlib.util.find_spec("vllm") is not None else "torch"


def make_generator(backend: str, model: Any, tokenizer: Any, **kw: Any) -> Generator:
    """A generator for `backend` ("torch", "vllm" or "auto") over `model` and `tokenizer`."""
    backend = resolve_backend(backend, model)
    if backend == "torch":
        return TorchGenerator(model, tokenizer, **kw)
    if backend == "vllm":
        from engine.generation_vllm import VLLMGenerator  # lazy: vLLM is an optional extra

        return VLLMGenerator(model, tokenizer, **kw)
    raise ValueError(f"Generation backend must be 'torch', 'vllm' or 'auto', not {backend!r}.")
