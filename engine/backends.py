"""The generation backends behind one factory: the torch sampler (`engine.generation`)
or vLLM (`engine.generation_vllm`, an optional extra imported only when asked for).

    gen = make_generator("torch", model, tokenizer)
"""

from __future__ import annotations

from typing import Any

from engine.generation import Generator, TorchGenerator

BACKENDS = ("torch", "vllm")


def make_generator(backend: str, model: Any, tokenizer: Any, **kw: Any) -> Generator:
    """A generator for `backend` ("torch" or "vllm") over `model` and `tokenizer`."""
    if backend == "torch":
        return TorchGenerator(model, tokenizer, **kw)
    if backend == "vllm":
        from engine.generation_vllm import VLLMGenerator  # lazy: vLLM is an optional extra

        return VLLMGenerator(model, tokenizer, **kw)
    raise ValueError(f"Generation backend must be 'torch' or 'vllm', not {backend!r}.")
