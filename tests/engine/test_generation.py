"""The torch generation backend: shapes, stops, log-probs, determinism, streaming."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from engine.backends import make_generator
from engine.generation import SamplingParams
from engine.tasks.templates import r1_zero_prompt

PROMPTS = [r1_zero_prompt("Tom has 3 apples. Tom buys 5 more. How many apples does Tom have now?"),
           r1_zero_prompt("Ann has 9 pens. Ann loses 2. How many pens does Ann have now?"),
           "short"]


def _true_logprobs(model, prompt_ids: list[int], completion_ids: list[int]) -> list[float]:
    """Log-probs of `completion_ids` by one unpadded forward pass over the whole sequence."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(completion_ids) - 1)
    return [logp[p, t].item() for p, t in zip(positions, completion_ids, strict=True)]


def test_it_returns_n_samples_per_prompt_in_order(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    samples = make_generator("torch", model, tokenizer).generate(PROMPTS, 3, SamplingParams(max_new_tokens=12, seed=1))
    assert [(s.prompt_index, s.sample_index) for s in samples] == [(i, j) for i in range(3) for j in range(3)]
    for s in samples:
        assert 1 <= len(s.completion_ids) <= 12
        assert len(s.logprobs) == len(s.completion_ids)
        assert s.prompt_ids == tokenizer(PROMPTS[s.prompt_index])["input_ids"]
        assert s.finish_reason in ("stop", "length")
        assert s.finish_reason == "length" or s.completion_ids[-1] == tokenizer.eos_token_id


def test_logprobs_agree_with_a_forward_pass(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    params = SamplingParams(temperature=1.3, top_p=0.9, max_new_tokens=20, seed=3)
    for s in make_generator("torch", model, tokenizer).generate(PROMPTS, 2, params):
        expected = _true_logprobs(model, s.prompt_ids, s.completion_ids)
        assert max(abs(a - b) for a, b in zip(s.logprobs, expected, strict=True)) < 1e-4


def test_a_seed_makes_it_repeatable(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    gen = make_generator("torch", model, tokenizer)
    params = SamplingParams(max_new_tokens=16, seed=7)
    first, again = gen.generate(PROMPTS, 4, params), gen.generate(PROMPTS, 4, params)
    assert [s.completion_ids for s in first] == [s.completion_ids for s in again]
    other = gen.generate(PROMPTS, 4, SamplingParams(max_new_tokens=16, seed=8))
    assert [s.completion_ids for s in first] != [s.completion_ids for s in other]


def test_greedy_matches_transformers_generate(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    [sample] = make_generator("torch", model, tokenizer).generate(PROMPTS[:1], 1, SamplingParams(temperature=0, max_new_tokens=10))
    ids = torch.tensor([sample.prompt_ids])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                         pad_token_id=tokenizer.pad_token_id)
    assert out[0, ids.shape[1]:].tolist()[: len(sample.completion_ids)] == sample.completion_ids


def test_stop_strings_cut_text_and_tokens(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    gen = make_generator("torch", model, tokenizer)
    [free] = gen.generate(PROMPTS[:1], 1, SamplingParams(max_new_tokens=24, seed=5))
    assert len(free.text) > 6
    stop = free.text[3:6]
    cut = free.text.find(stop)
    [stopped] = gen.generate(PROMPTS[:1], 1, SamplingParams(max_new_tokens=24, seed=5, stop=[stop]))
    assert stopped.text == free.text[:cut]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_ids == free.completion_ids[: len(stopped.completion_ids)]
    assert tokenizer.decode(stopped.completion_ids).find(stop) >= 0  # the stop's token is kept


def test_eos_ends_a_completion_with_reason_stop(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    [free] = make_generator("torch", model, tokenizer).generate(PROMPTS[:1], 1, SamplingParams(max_new_tokens=16, seed=2))
    pretend_eos = free.completion_ids[3]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, pretend_eos]
    [ended] = make_generator("torch", model, tokenizer).generate(PROMPTS[:1], 1, SamplingParams(max_new_tokens=16, seed=2))
    first = free.completion_ids.index(pretend_eos)
    assert ended.completion_ids == free.completion_ids[: first + 1]
    assert ended.finish_reason == "stop"
    assert ended.text == tokenizer.decode(free.completion_ids[:first])


def test_max_new_tokens_ends_with_reason_length(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    samples = make_generator("torch", model, tokenizer).generate(PROMPTS, 2, SamplingParams(max_new_tokens=2, seed=0))
    assert all(s.finish_reason == "length" for s in samples if len(s.completion_ids) == 2 and
               s.completion_ids[-1] != tokenizer.eos_token_id)
    assert all(len(s.completion_ids) <= 2 for s in samples)


@pytest.mark.parametrize("stop", [[], ["</answer>"], [" 1", "is"]])
def test_streaming_reconstructs_the_text(tiny_model_and_tokenizer: tuple, stop: list[str]) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    streamed: dict[tuple[int, int], str] = defaultdict(str)

    def on_token(i: int, j: int, delta: str) -> None:
        streamed[i, j] += delta

    params = SamplingParams(max_new_tokens=30, seed=11, stop=stop)
    samples = make_generator("torch", model, tokenizer).generate(PROMPTS, 3, params, on_token=on_token)
    for s in samples:
        assert streamed[s.prompt_index, s.sample_index] == s.text
        assert not any(x in s.text for x in stop)


def test_text_is_the_decoded_completion(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    for s in make_generator("torch", model, tokenizer).generate(PROMPTS, 4, SamplingParams(max_new_tokens=20, seed=4)):
        assert s.text == tokenizer.decode(s.completion_ids, skip_special_tokens=True)


def test_update_weights_changes_samples(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    gen = make_generator("torch", model, tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=8)
    before = gen.generate(PROMPTS[:1], 1, params)[0].completion_ids
    other = type(model)(model.config)  # fresh random weights
    gen.update_weights(other)
    assert gen.generate(PROMPTS[:1], 1, params)[0].completion_ids != before


def test_it_rejects_bad_parameters(tiny_model_and_tokenizer: tuple) -> None:
    model, tokenizer = tiny_model_and_tokenizer
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="backend"):
        make_generator("tpu", model, tokenizer)


def test_stored_completions_keep_the_stop_string_graders_do_not_see(tiny_model_and_tokenizer):
    from engine.generation import Sample, with_stop_string

    _, tokenizer = tiny_model_and_tokenizer
    ids = tokenizer.encode("<think>4 + 5 = 9</think> <answer> 9</answer>", add_special_tokens=False)
    stopped = Sample(0, 0, [], ids, "<think>4 + 5 = 9</think> <answer> 9", [], "stop")
    assert with_stop_string(stopped, ["</answer>"], tokenizer, set()) == \
        "<think>4 + 5 = 9</think> <answer> 9</answer>"
    cut = Sample(0, 0, [], ids[:-3], "<think>4 + 5 = 9</think> <answer>", [], "length")
    assert with_stop_string(cut, ["</answer>"], tokenizer, set()) == cut.text  # cut by the length limit
    eos = Sample(0, 0, [], [*ids[:-3], 7], "<think>4 + 5 = 9</think> <answer>", [], "stop")
    assert with_stop_string(eos, ["</answer>"], tokenizer, {7}) == eos.text  # ended by EOS, no stop string


def test_a_shared_prefill_samples_what_each_row_alone_would(tiny_model_and_tokenizer: tuple) -> None:
    """The prompt runs once per group and its cache is copied to the G samples: the same
    tokens and log-probs (1e-5, fp32) as prefilling every row by itself, and as sampling
    each prompt's group in a batch of its own."""
    from engine.generation import TorchGenerator

    model, tokenizer = tiny_model_and_tokenizer
    params = SamplingParams(temperature=1.0, max_new_tokens=24, seed=11)
    shared = TorchGenerator(model, tokenizer).generate(PROMPTS, 4, params)
    apart = TorchGenerator(model, tokenizer, share_prefix=False).generate(PROMPTS, 4, params)
    alone = [s for i, p in enumerate(PROMPTS)
             for s in TorchGenerator(model, tokenizer).generate([p], 4, params, first_prompt=i)]
    assert len({tuple(s.completion_ids) for s in shared}) > 4  # the rows really differ
    for reference in (apart, alone):
        assert [s.completion_ids for s in shared] == [s.completion_ids for s in reference]
        for a, b in zip(shared, reference, strict=True):
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-5


def test_auto_picks_the_torch_sampler_for_a_model_on_the_cpu(tiny_model_and_tokenizer: tuple) -> None:
    from engine.backends import resolve_backend
    from engine.generation import TorchGenerator

    model, tokenizer = tiny_model_and_tokenizer
    assert resolve_backend("auto", model) == "torch" and resolve_backend("vllm", model) == "vllm"
    assert isinstance(make_generator("auto", model, tokenizer), TorchGenerator)
