"""Sampling k completions per prompt and grading them: what evaluation, rejection
sampling and distillation share.

    config = EvalConfig(model="starter", task="arithmetic", k=8)
    sampler = GradedSampler.load(config, sink.log)
    for start, batch in batches(sampler.examples, config.prompts_per_batch):
        groups = sampler.sample(batch, start)     # one list of k GradedSamples per prompt

Prompts come from a built-in task or a dataset and are formatted exactly as GRPO
formats them (so a checkpoint is judged on what it was trained on). Correctness is the
`accuracy_reward` (the task's grader by default) scoring 1.0, as in GRPO.

Results are written per batch to a JSONL file so that a stopped run keeps what it did
and `resume_from` (an earlier output directory of the same config) carries on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.behaviours import behaviours
from engine.config import (
    COLUMNS_HELP,
    DTYPES,
    StageConfigMixin,
    option,
    require,
    require_columns,
    require_generation_backend,
    require_judge,
)
from engine.events import RolloutRecord, Sink
from engine.scoring import RewardScorer, sandboxed_rewards
from engine.tasks.base import extract_answer
from engine.tasks.templates import STYLES as PROMPT_STYLES
from engine.tasks.templates import format_prompt
from engine.text import split_reasoning
from engine.training import StageResult

Example = dict[str, Any]
CONFIG_FILE = "stage_config.json"  # the config a results folder was written with


@dataclass
class DatasetStageResult(StageResult):
    """A StageResult that also names the SFT dataset the stage wrote (None when it kept
    no rows)."""

    dataset: str | None = None


@dataclass
class SamplingConfig(StageConfigMixin):
    """Fields shared by the stages that sample k completions per prompt and grade them."""

    model: str = option("starter", "Model to sample from: a checkpoint directory, a Hugging Face name, or "
                        "`starter` / `starter-moe`.")
    output_dir: str = option("var/runs/sampling", "Folder for the results.")
    task: str | None = option("arithmetic", "Built-in task whose prompts are used (arithmetic, countdown, "
                              "python, humaneval with split test, or reasoning_gym:<name>); None when `dataset` "
                              "is given.")
    task_options: dict[str, Any] = option({}, "Options for the built-in task, e.g. {\"difficulty\": 2}.")
    dataset: str | None = option(None, "Path of a prompt dataset (rows with `prompt` and `answer` or "
                                 "`tests`) instead of a built-in task.")
    split: str = option("test", "Split of the task (train or test), or of a saved datasets directory.")
    columns: dict[str, str] = option({}, COLUMNS_HELP)
    num_prompts: int | None = option(100, "How many prompts to use, from the start of the split "
                                     "(None: the whole split).")
    k: int = option(8, "Completions sampled per prompt.")
    temperature: float = option(0.6, "Sampling temperature (R1's evaluation convention: 0.6; 0: greedy).")
    top_p: float = option(0.95, "Nucleus sampling threshold (R1's evaluation convention: 0.95).")
    max_new_tokens: int = option(128, "Longest completion in tokens; longer ones are cut.")
    stop: list[str] = option(["</answer>"], "Strings that end a completion.")
    prompt_style: str = option("auto", "Prompt template: r1_zero (plain text, base models), chat "
                               "(the tokenizer's chat template) or auto (chat when the tokenizer has one).")
    prefill_think: bool = option(False, "Start every completion with `<think>`.")
    accuracy_reward: str = option("task", "Reward whose value 1.0 marks a correct completion: `task` (the "
                                  "task's own grader), a name from engine.rewards (math, code) or a dotted path.")
    judge: dict[str, Any] = option({}, "A generative judge as the reward `judge` (e.g. accuracy_reward judge): "
                                   "{\"model\": <allowed model>, \"max_new_tokens\": 16}; an answer it gives no "
                                   "verdict on is an error, not a score.")
    rewards: dict[str, float] = option({"format": 1.0}, "Further rewards to score every completion with "
                                       "(name → weight), reported per sample and as means.")
    custom_rewards: dict[str, str] = option({}, "Reward name → file of Python source defining "
                                            "`reward(completion, example)`, run only in the sandbox, one "
                                            "sandbox per batch.")
    prompts_per_batch: int = option(16, "Prompts sampled together; results are written, progress is "
                                    "reported and a stop request is honoured after each batch.")
    stream_samples: int = option(2, "Completions of each batch's first prompt streamed live to the run page.")
    generation_backend: str = option("torch", "Sampler: torch (transformers) or vllm.")
    seed: int = option(0, "Sampling seed; the same seed gives the same samples.")
    dtype: str = option("float32", "Model dtype: float32, bfloat16 or float16.")
    device: str = option("cpu", "Torch device, e.g. cpu or cuda.")
    num_threads: int | None = option(None, "torch CPU threads (None leaves the process setting alone).")

    def __post_init__(self) -> None:
        self._check_source()
        self._check_sampling()

    def _check_source(self) -> None:
        require(bool(self.model), "model must name a model: a checkpoint, a Hugging Face name or `starter`.")
        require((self.task is None) != (self.dataset is None),
                "Give exactly one of task or dataset: the stage needs one source of prompts.")
        require_columns(self.columns, self.dataset)
        require_judge(self.judge, self.rewards, self.accuracy_reward)
        require(self.task is not None or (self.accuracy_reward != "task" and "task" not in self.rewards),
                "The `task` reward needs a built-in task: with a dataset, set accuracy_reward to a reward "
                "such as math or code.")
        require(self.task is None or self.split in ("train", "test"),
                f"split must be train or test for a built-in task, got {self.split!r}.")
        require(self.num_prompts is None or self.num_prompts >= 1, "num_prompts must be at least 1 or None.")
        require(all(math.isfinite(w) for w in self.rewards.values()), "Reward weights must be finite numbers.")
        require(self.prompt_style in PROMPT_STYLES,
                f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {self.prompt_style!r}.")

    def _check_sampling(self) -> None:
        require(self.k >= 1, f"k (samples per prompt) must be at least 1, got {self.k}.")
        require(self.temperature >= 0, f"temperature must be >= 0 (0: greedy), got {self.temperature}.")
        require(self.temperature > 0 or self.k == 1,
                "Greedy decoding (temperature 0) makes all k samples identical: use k = 1 or a temperature > 0.")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}.")
        require(self.max_new_tokens >= 1, "max_new_tokens must be at least 1.")
        require(all(self.stop), "stop strings must not be empty.")
        require(self.stream_samples >= 0, f"stream_samples must be >= 0, got {self.stream_samples}.")
        require(self.prompts_per_batch >= 1, "prompts_per_batch must be at least 1.")
        require_generation_backend(self.generation_backend)
        require(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        require(self.num_threads is None or self.num_threads >= 1, "num_threads must be at least 1 or None.")


@dataclass
class GradedSample:
    """One completion with its grades."""

    sample_index: int
    text: str  # as sampled (the stop string cut off)
    completion: str  # `text` with the stop string that ended it put back (what SFT should learn)
    tokens: int
    finish_reason: str
    correct: bool
    rewards: dict[str, float]
    score: float  # weighted sum of `rewards`
    answer: str | None  # the extracted final answer
    notes: dict[str, Any] = field(default_factory=dict)  # graders with no score; the judge's words


@dataclass
class GradedSampler:
    """A model, its sampler and the graders, over the configured prompts."""

    config: SamplingConfig
    model: Any
    tokenizer: Any
    generator: Any
    scorer: RewardScorer
    examples: list[Example] = field(default_factory=list)
    eos: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, config: SamplingConfig, log: Callable[[str], None]) -> GradedSampler:
        """Load the model and tokenizer, the prompts and the graders of `config`."""
        from engine.backends import make_generator
        from engine.generation import eos_ids
        from engine.models import load_model, load_tokenizer

        model = load_model(config.model, dtype=config.dtype, device=config.device)
        tokenizer = load_tokenizer(config.model)
        task = load_task(config)
        weights = {config.accuracy_reward: 0.0, **config.rewards}  # the grader runs once per sample
        generator = make_generator(config.generation_backend, model, tokenizer)
        judge = {}
        if config.judge:
            from engine.judge import Judge

            judge = {"judge": Judge.load(config.judge, device=config.device, dtype=config.dtype)}
        scorer = RewardScorer(weights, task, log, {**sandboxed_rewards(config.custom_rewards), **judge})
        return cls(config, model, tokenizer, generator, scorer,
                   load_prompts(config, tokenizer, task), eos_ids(model, tokenizer))

    def sample(self, examples: list[Example], start: int, sink: Sink | None = None) -> list[list[GradedSample]]:
        """k graded samples for each example; `start` (the batch's first prompt index)
        seeds the batch, so a resumed run samples what an uninterrupted one would. With a
        `sink`, the first prompt's first `stream_samples` completions stream live."""
        from engine.generation import SamplingParams

        cfg = self.config
        params = SamplingParams(temperature=cfg.temperature, top_p=1.0 if cfg.temperature == 0 else cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, stop=list(cfg.stop),
                                seed=(cfg.seed * 1_000_003 + start) % 2**62)
        prompts = [ex["text"] for ex in examples]
        streamed = min(cfg.stream_samples, cfg.k) if sink is not None and prompts else 0

        def on_token(prompt_index: int, sample_index: int, text: str) -> None:
            if sink is not None and prompt_index == 0 and sample_index < streamed:
                sink.tokens(f"batch{start}-{sample_index}", text, step=0, prompt=prompts[0])

        samples = self.generator.generate(prompts, cfg.k, params, on_token if streamed else None)
        for j in range(streamed):
            assert sink is not None
            sink.tokens(f"batch{start}-{j}", "", step=0, prompt=prompts[0], done=True)
        graded_examples = [graded_example(examples[s.prompt_index], len(s.completion_ids), cfg.max_new_tokens)
                           for s in samples]
        scores = self.scorer.score_many([(s.text, ex) for s, ex in zip(samples, graded_examples, strict=True)])
        notes = self.scorer.notes(len(samples))
        groups: list[list[GradedSample]] = [[] for _ in examples]
        for s, ex, (_, comps), note in zip(samples, graded_examples, scores, notes, strict=True):
            graded = self._graded(s, ex, comps)
            graded.notes = note
            groups[s.prompt_index].append(graded)
        return groups

    def _graded(self, sample: Any, example: Example, comps: dict[str, float]) -> GradedSample:
        cfg = self.config
        rewards = {name: comps[name] for name in cfg.rewards if name in comps}  # a grader with no score: none
        return GradedSample(
            sample_index=sample.sample_index, text=sample.text, completion=self._with_stop(sample),
            tokens=len(sample.completion_ids), finish_reason=sample.finish_reason,
            correct=self.scorer.correct(sample.text, example, comps, cfg.accuracy_reward), rewards=rewards,
            score=sum(cfg.rewards[n] * v for n, v in rewards.items()), answer=extract_answer(sample.text))

    def _with_stop(self, sample: Any) -> str:
        from engine.generation import with_stop_string

        return with_stop_string(sample, list(self.config.stop), self.tokenizer, self.eos)


def load_task(config: SamplingConfig) -> Any:
    """The built-in task object, or None for a dataset."""
    if config.task is None:
        return None
    from engine import tasks

    return tasks.get(config.task, **config.task_options)


def load_prompts(config: SamplingConfig, tokenizer: Any, task: Any) -> list[Example]:
    """The configured examples, each with `text`: the prompt as the model sees it."""
    if task is not None:
        examples = task.examples(config.split, config.num_prompts)
    else:
        from engine.datasets import load_examples

        assert config.dataset is not None
        examples = load_examples(config.dataset, split=config.split, columns=config.columns)[: config.num_prompts]
    for ex in examples:
        ex["text"] = format_prompt(ex["prompt"], tokenizer, style=config.prompt_style,
                                   prefill_think=config.prefill_think)
        ex["think_prefilled"] = config.prefill_think  # the format reward then expects no <think>
    return examples


def graded_example(example: Example, completion_tokens: int, max_length: int) -> Example:
    """The example as graders see it, with the token count and limit the length rewards read."""
    return {**example, "completion_tokens": completion_tokens, "max_length": max_length}


def batches(items: list[Example], size: int, start: int = 0) -> list[tuple[int, list[Example]]]:
    """(index of the first item, items) chunks of at most `size`, from `start` on."""
    return [(i, items[i : i + size]) for i in range(start, len(items), size)]


def rollout_record(example: Example, s: GradedSample, metadata: dict[str, Any]) -> RolloutRecord:
    """One graded sample as a RolloutRecord at step 0 (the reward is its correctness)."""
    reasoning, tail = split_reasoning(s.text)
    return RolloutRecord(
        step=0, prompt=example["text"], completion=s.completion, rewards={"correct": float(s.correct), **s.rewards},
        reward=float(s.correct), sample_index=s.sample_index, reasoning=reasoning, answer=s.answer or tail,
        reference=str(example.get("answer", "")), token_count=s.tokens, finish_reason=s.finish_reason,
        metadata={"question": example.get("prompt", ""), "example_id": example.get("id"),
                  "behaviours": sorted(behaviours(s.text, s.finish_reason)), **s.notes, **metadata})


# ----------------------------------------------------------------------------
# Results files that survive a stop
# ----------------------------------------------------------------------------


def open_results(config: SamplingConfig, name: str, resume_from: str | Path | None) -> list[dict[str, Any]]:
    """Start `<output_dir>/<name>`: empty, or holding the rows of an earlier run of the
    same config at `resume_from` (a results folder); returns those rows."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if resume_from is not None:
        rows = _earlier_rows(config, Path(resume_from), name)
    (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    with open(out / name, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return rows


def _earlier_rows(config: SamplingConfig, folder: Path, name: str) -> list[dict[str, Any]]:
    """Rows written by an earlier run in `folder`, after checking it used the same config."""
    saved_path = folder / CONFIG_FILE
    if not saved_path.exists():
        raise ValueError(f"resume_from must be a results folder of an earlier run: {saved_path} is missing.")
    saved, now = json.loads(saved_path.read_text()), config.to_dict()
    differ = sorted(k for k in now if k != "output_dir" and saved.get(k) != now[k])
    if differ:
        raise ValueError("Resuming needs the config of the earlier run; these fields differ: "
                         f"{', '.join(differ)}.")
    if not (folder / name).exists():
        return []
    with open(folder / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def append_results(config: SamplingConfig, name: str, rows: list[dict[str, Any]]) -> None:
    """Append rows to `<output_dir>/<name>`."""
    with open(Path(config.output_dir) / name, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
