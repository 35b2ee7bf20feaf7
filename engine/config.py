"""Configuration shared by the training stages.

Each stage has a dataclass config (`GRPOConfig`, `SFTConfig`) in the style of TRL's
`GRPOConfig`: every field carries help text in `metadata["help"]`, `__post_init__`
rejects bad combinations with a sentence that states the rule, and the config is
saved into every checkpoint (`to_dict`) and read back (`from_dict`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any, Self

from engine.tasks.templates import STYLES as PROMPT_STYLES

LR_SCHEDULES = ("constant", "linear", "cosine")
ADVANTAGE_SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo", "cispo")
IS_LEVELS = ("token", "sequence")  # token: PPO/GRPO; sequence: GSPO
TIS_MODES = ("truncate", "mask")
OLD_LOGPROBS = ("auto", "sampler", "recompute")
BATCH_LAYOUTS = ("auto", "grouped", "packed", "padded")
DTYPES = ("float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("auto", "eager", "sdpa", "flash_attention_2", "flex_attention")
LAUNCHERS = ("none", "torchrun", "accelerate")
SHARDINGS = ("none", "fsdp")


def option(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors TRL's metadata key
    """A dataclass field with help text; mutable defaults go through a factory."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def launcher_option() -> Any:
    return option("none", "How the web app's worker starts the stage: none (in the worker's own process), "
                  "torchrun or accelerate (`accelerate launch`): nproc_per_node data-parallel processes, "
                  "each sampling and training on its share of every batch; same result as one process.")


def nproc_option() -> Any:
    return option(1, "Processes (one per GPU, or CPU processes) when launcher is torchrun or accelerate.")


def sharding_option() -> Any:
    return option("none", "Parameter sharding across processes: none (each process holds the whole "
                  "model) or fsdp (each holds 1/nproc_per_node of the weights, gradients and optimizer "
                  "state, for models that do not fit one device; GRPO sampling still gathers the whole "
                  "policy on each process).")


def check_launch(launcher: str, nproc_per_node: int, sharding: str) -> None:
    """The rules of the three launch fields, as sentences."""
    require(launcher in LAUNCHERS, f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}.")
    require(isinstance(nproc_per_node, int) and nproc_per_node >= 1,
            f"nproc_per_node must be at least 1, got {nproc_per_node!r}.")
    require(nproc_per_node == 1 or launcher != "none",
            f"nproc_per_node={nproc_per_node} needs launcher torchrun or accelerate: without a launcher the "
            "stage runs in one process.")
    require(sharding in SHARDINGS, f"sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}.")


class StageConfigMixin:
    """What every stage config has: `from_dict` naming unknown keys, `to_dict` and `help`."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from plain data (JSON, the web form), naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, 1)) else k
                     for k in unknown]
            raise ValueError(f"Unknown {cls.__name__} keys: {', '.join(hints)}. "
                             f"Valid keys: {', '.join(sorted(known))}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-friendly data; `from_dict(to_dict())` gives an equal config."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text, for forms and `--help-config`."""
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return {f.name: f.metadata.get("help", "") for f in fields if f.init}


@dataclass
class TrainConfig(StageConfigMixin):
    """Fields every training stage has: model, optimiser, schedule, bookkeeping."""

    model: str = option("starter", "Model to train: a Hugging Face name or local path, or `starter` / "
                        "`starter-moe` for the offline starter base model.")
    output_dir: str = option("var/runs/run", "Folder for checkpoints (`checkpoint-<step>/`).")
    learning_rate: float = option(1e-5, "Peak AdamW learning rate.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    warmup_steps: int = option(0, "Optimizer steps of linear warm-up from 0 to `learning_rate`.")
    lr_schedule: str = option("constant", "Learning-rate schedule after warm-up: constant, linear or cosine "
                              "(decaying to 0 at the last step).")
    max_grad_norm: float = option(1.0, "Clip the global gradient norm to this value; 0 disables clipping.")
    micro_batch_size: int = option(16, "Sequences per forward/backward pass; gradients are accumulated "
                                   "over micro-batches so the result does not depend on it.")
    save_every: int = option(0, "Save a checkpoint every N optimizer steps (0: only at the end).")
    eval_every: int = option(0, "Evaluate every N steps, and once before the first step (0: only at "
                             "the end, when there is evaluation data).")
    seed: int = option(0, "Seed for data order, sampling and initialisation; the same seed gives "
                       "the same run.")
    dtype: str = option("float32", "Parameter dtype: float32, bfloat16 or float16.")
    device: str = option("cpu", "Torch device, e.g. cpu or cuda.")
    lora: dict[str, Any] | None = option(None, "LoRA settings passed to `engine.models.load_model` "
                                         "(e.g. {\"r\": 8, \"alpha\": 16}); None trains all weights.")
    gradient_checkpointing: bool = option(False, "Recompute each layer's activations in the backward pass "
                                          "instead of keeping them: much less memory for about a third "
                                          "more compute per training pass.")
    attn_implementation: str = option("auto", "Attention kernel: auto (the model's default, SDPA for most), "
                                      "eager, sdpa, flash_attention_2 (CUDA, needs flash-attn) or "
                                      "flex_attention.")
    num_threads: int | None = option(None, "torch CPU threads for this run (None leaves the process "
                                     "setting alone).")
    launcher: str = launcher_option()
    nproc_per_node: int = nproc_option()
    sharding: str = sharding_option()

    def __post_init__(self) -> None:
        self._check_train_fields()
        check_launch(self.launcher, self.nproc_per_node, self.sharding)
        require(self.sharding != "fsdp" or self.lora is None,
                "sharding fsdp cannot train LoRA adapters: use sharding none, or lora null to train "
                "all weights.")

    def _check_train_fields(self) -> None:
        require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                f"learning_rate must be a positive number, got {self.learning_rate}.")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}.")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}.")
        require(self.lr_schedule in LR_SCHEDULES,
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}.")
        require(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}.")
        require(self.micro_batch_size >= 1, f"micro_batch_size must be at least 1, got {self.micro_batch_size}.")
        require(self.save_every >= 0, f"save_every must be >= 0 (0: only at the end), got {self.save_every}.")
        require(self.eval_every >= 0, f"eval_every must be >= 0 (0: only at the end), got {self.eval_every}.")
        require(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        require_attention(self.attn_implementation, self.device, self.dtype)
        require(bool(self.model), "model must name a model: a Hugging Face name, a local path or `starter`.")
        require(self.num_threads is None or self.num_threads >= 1,
                f"num_threads must be at least 1 or None, got {self.num_threads}.")


def require(condition: bool, sentence: str) -> None:
    """Raise ValueError(sentence) unless `condition` holds."""
    if not condition:
        raise ValueError(sentence)


VLLM_MISSING = ("generation_backend vllm needs vLLM, which is not installed in this Python: on CPUs run "
                "`make vllm` and use var/vllm-venv/bin/python; on GPU machines `pip install 'ponder[vllm]'`.")


COLUMNS_HELP = ("Which of the dataset's columns holds what, for layouts Ponder does not recognise by "
                "itself, e.g. {\"prompt\": \"question\", \"answer\": \"final\"}; roles: prompt, answer, "
                "solution, tests, entry_point, language, system_prompt, id.")


def require_columns(columns: dict[str, str], dataset: str | None) -> None:
    """A column mapping names known roles and goes with a dataset."""
    from engine.datasets import DatasetError, check_columns

    require(not columns or dataset is not None, "columns go with dataset: a built-in task has its own fields.")
    try:
        check_columns(columns)
    except DatasetError as e:
        raise ValueError(str(e)) from None


CURRICULUM_KEYS = {"promote_at": 0.75, "window": 5, "start_level": 0}


def require_curriculum(curriculum: dict[str, Any], task: str | None) -> None:
    """A curriculum goes with a reasoning_gym task whose dataset has one, with known keys in range."""
    if not curriculum:
        return
    require(task == "arithmetic" or (bool(task) and str(task).startswith("reasoning_gym:")),
            "curriculum needs a task with difficulty levels: arithmetic or a reasoning_gym:<name> task, and "
            f"{task or 'a dataset'} has none.")
    unknown = sorted(set(curriculum) - set(CURRICULUM_KEYS))
    require(not unknown, f"curriculum has unknown keys {', '.join(unknown)}; it takes {', '.join(CURRICULUM_KEYS)}.")
    c = {**CURRICULUM_KEYS, **curriculum}
    require(isinstance(c["promote_at"], int | float) and 0 < c["promote_at"] <= 1,
            f"curriculum.promote_at must be an accuracy in (0, 1], got {c['promote_at']!r}.")
    require(isinstance(c["window"], int) and c["window"] >= 1,
            f"curriculum.window must be a whole number of steps >= 1, got {c['window']!r}.")
    require(isinstance(c["start_level"], int) and c["start_level"] >= 0,
            f"curriculum.start_level must be a whole number >= 0, got {c['start_level']!r}.")
    if task == "arithmetic":
        return
    from reasoning_gym.factory import has_curriculum

    name = str(task).split(":", 1)[1]
    require(has_curriculum(name), f"curriculum: reasoning-gym has no curriculum for {name}; train it at its options.")


JUDGE_KEYS = ("model", "max_new_tokens", "template")


def check_judge(settings: dict[str, Any]) -> None:
    """A generative judge's settings (engine.judge) name a model and only known keys."""
    if not settings:
        return
    unknown = sorted(set(settings) - set(JUDGE_KEYS))
    require(not unknown, f"judge has unknown keys {', '.join(unknown)}; it takes {', '.join(JUDGE_KEYS)}.")
    require(isinstance(settings.get("model"), str) and bool(settings["model"]),
            "judge.model must name the judging model (a Hugging Face name, a folder or checkpoint).")
    tokens = settings.get("max_new_tokens", 16)
    require(isinstance(tokens, int) and 1 <= tokens <= 512,
            f"judge.max_new_tokens must be a whole number in [1, 512], got {tokens!r}.")
    template = settings.get("template", "{answer}")
    require(isinstance(template, str) and "{answer}" in template,
            "judge.template must be text with an {answer} slot (and {question}, {reference}).")


def require_judge(judge: dict[str, Any], rewards: dict[str, float], accuracy_reward: str) -> None:
    """The `judge` reward goes with judge settings, which name a model."""
    check_judge(judge)
    require(bool(judge) or ("judge" not in rewards and accuracy_reward != "judge"),
            "The judge reward needs judge settings: {\"model\": <the judging model>}.")


def require_attention(name: str, device: str, dtype: str) -> None:
    """Raise ValueError unless `name` is an attention kernel that can run on `device` in `dtype`."""
    require(name in ATTN_IMPLEMENTATIONS, f"attn_implementation must be one of "
            f"{', '.join(ATTN_IMPLEMENTATIONS)}, got {name!r}.")
    if name != "flash_attention_2":
        return
    require(device.startswith("cuda"), "attn_implementation flash_attention_2 runs on CUDA only: use sdpa "
            f"on {device!r}.")
    require(dtype in ("bfloat16", "float16"), "attn_implementation flash_attention_2 needs dtype bfloat16 "
            f"or float16, got {dtype!r}.")
    require(importlib.util.find_spec("flash_attn") is not None, "attn_implementation flash_attention_2 "
            "needs the flash-attn package, which is not installed in this Python: use sdpa.")


def require_generation_backend(name: str) -> None:
    """Raise ValueError unless `name` is a backend this Python can run (vLLM is an optional extra)."""
    require(name in ("torch", "vllm", "auto"), f"generation_backend must be torch, vllm or auto, got {name!r}.")
    require(name != "vllm" or importlib.util.find_spec("vllm") is not None, VLLM_MISSING)


@dataclass
class GRPOConfig(TrainConfig):
    """Settings of one GRPO run (R1-Zero when `model` is a base model)."""

    output_dir: str = option("var/runs/grpo", "Folder for checkpoints (`checkpoint-<step>/`).")
    learning_rate: float = option(2e-4, "Peak AdamW learning rate. The default suits the ~1M-parameter "
                                  "starter (5e-4 learns faster but drifts once solved); real LMs want "
                                  "~1e-6 to 3e-6 (R1-Zero: 3e-6).")
    warmup_steps: int = option(5, "Optimizer steps of linear warm-up from 0 to `learning_rate`.")
    micro_batch_size: int = option(64, "Sequences per forward/backward pass; gradients are accumulated "
                                   "over micro-batches so the result does not depend on it.")
    eval_every: int = option(5, "Evaluate on held-out prompts every N steps and once before the first "
                             "(0: only at the end).")
    task: str | None = option("arithmetic", "Built-in task to train on (arithmetic, countdown, python, or "
                              "reasoning_gym:<name>); None when `dataset` is given.")
    task_options: dict[str, Any] = option({}, "Options for the built-in task, e.g. {\"difficulty\": 2}.")
    dataset: str | None = option(None, "Path of a prompt dataset (rows with `prompt` and `answer`) "
                                 "instead of a built-in task.")
    eval_dataset: str | None = option(None, "Path of held-out prompts for evaluation (with `dataset`).")
    columns: dict[str, str] = option({}, COLUMNS_HELP)
    curriculum: dict[str, Any] = option({}, "Difficulty curriculum for arithmetic (its difficulties 1-4) or a "
                                        "reasoning_gym task (its library's levels): {\"promote_at\": 0.75, \"window\": 5, \"start_level\": 0} "
                                        "moves to the next level once mean accuracy over the last `window` "
                                        "steps reaches `promote_at`; {} trains at the task's own options.")
    train_examples: int | None = option(None, "How many training examples to draw from the task "
                                        "(None: the task's default).")
    eval_examples: int = option(100, "Held-out examples scored at each evaluation.")
    prompt_style: str = option("auto", "Prompt template: r1_zero (plain text, base models), chat "
                               "(the tokenizer's chat template) or auto (chat when the tokenizer has one).")
    prefill_think: bool = option(False, "Start every completion with `<think>` for models that never "
                                 "open it by themselves.")
    rewards: dict[str, float] = option({"format": 0.5, "task": 1.0}, "Reward name → weight; the "
                                       "total reward is the weighted sum. `task` is the task's own grader; "
                                       "other names come from `engine.rewards` (format, math, code, language).")
    accuracy_reward: str = option("task", "Reward whose value 1.0 counts as a correct answer for the "
                                  "`accuracy` metric.")
    custom_rewards: dict[str, str] = option({}, "Reward name → file of Python source defining "
                                            "`reward(completion, example)`, run only in the sandbox, one "
                                            "sandbox per batch; name it in `rewards` to weight it.")
    judge: dict[str, Any] = option({}, "A generative judge as the reward `judge`: {\"model\": <allowed model>, "
                                   "\"max_new_tokens\": 16, \"template\": <with {question}, {reference}, "
                                   "{answer}>}; it grades each answer against the reference, and an answer it "
                                   "gives no verdict on is an error, not a score.")
    detectors: dict[str, str] = option({}, "Your own behaviour detectors: name → regular expression searched "
                                       "(case-insensitively) in each sample's reasoning, e.g. {\"hmm\": "
                                       "\"\\\\bhmm+\\\\b\"}; each becomes a curve behaviour/<name> and an explorer filter.")
    group_size: int = option(8, "G: completions sampled per prompt; advantages compare them.")
    prompts_per_step: int = option(8, "Prompts per step; the batch is prompts_per_step * group_size.")
    max_new_tokens: int = option(64, "Longest completion in tokens; longer ones are cut (finish "
                                 "reason `length`).")
    temperature: float = option(1.0, "Sampling temperature during training (R1-Zero: 1.0).")
    top_p: float = option(1.0, "Nucleus sampling threshold during training.")
    stop: list[str] = option(["</answer>"], "Strings that end a completion.")
    steps: int = option(100, "Optimizer steps to run (each on a fresh batch of prompts).")
    loss_type: str = option("dapo", "Loss aggregation: grpo (per-sequence mean), bnpo/dapo "
                            "(token-level), dr_grpo (constant normaliser), cispo (MiniMax-M1: the "
                            "importance weight is clipped at 1 + epsilon_high, every token keeps its gradient).")
    importance_sampling_level: str = option("token", "Ratio per token (PPO/GRPO) or per sequence (GSPO: "
                                            "the geometric mean of the token ratios, so whole sequences "
                                            "are clipped).")
    tis_cap: float = option(0.0, "Truncated importance sampling: weigh each token by the trainer/sampler "
                            "probability ratio, capped at this value, to correct their mismatch (vLLM or "
                            "bf16 sampling); 0 turns it off. The mismatch is logged either way.")
    tis_mode: str = option("truncate", "With tis_cap: truncate (min(weight, cap)) or mask (drop tokens whose "
                           "weight lies outside [1/cap, cap]).")
    scale_rewards: str = option("group", "Advantage scaling: group (std of the group), batch (std of "
                                "the batch) or none (Dr. GRPO).")
    epsilon_low: float = option(0.2, "Lower clip range: the ratio is clipped at 1 - epsilon_low.")
    epsilon_high: float = option(0.28, "Upper clip range: ratio clipped at 1 + epsilon_high (DAPO's "
                                 "clip-higher; 0.2 is the symmetric PPO/GRPO value).")
    beta: float = option(0.0, "KL penalty coefficient against the reference model (R1-Zero: 0.001); "
                         "0 skips the reference model.")
    ref_refresh_steps: int = option(0, "Copy the policy into the reference model every N steps "
                                    "(0: keep the initial model).")
    ref_offload: bool = option(False, "Keep the reference model's copy in CPU memory and bring it to the "
                               "device only for its forward passes (LoRA runs need no copy: their "
                               "reference is the policy with its adapter off).")
    num_iterations: int = option(1, "μ: optimizer updates per generated batch (PPO-style reuse).")
    old_logprobs: str = option("auto", "With num_iterations > 1, where the sampling policy's log-probs come "
                               "from: sampler (its own, saving a forward pass), recompute (a forward pass "
                               "before the updates) or auto (sampler where they are exact: the torch backend, "
                               "float32, temperature 1, one process).")
    dynamic_sampling: bool = option(False, "DAPO dynamic sampling: groups whose rewards are all equal "
                                    "carry no signal, so more prompts are sampled until prompts_per_step "
                                    "groups with signal fill the batch (see max_refills).")
    max_refills: int = option(3, "With dynamic_sampling: extra rounds of prompts_per_step prompts a step may "
                              "sample to fill its batch; after them the step trains on the groups it has "
                              "(0: never refill, just leave the equal groups out).")
    mask_truncated_completions: bool = option(False, "DAPO overlong filtering: exclude completions "
                                              "cut at max_new_tokens from the loss.")
    generation_backend: str = option("torch", "Sampler: torch (transformers), vllm, or auto (vLLM for a model on a "
                                     "GPU where it is installed, else torch; the run log says which).")
    share_prompt_cache: bool = option(True, "Run each prompt once per micro-batch in training and reuse "
                                      "its key/value cache for the group's completions (same result, "
                                      "several times fewer tokens); turn off for models whose cache "
                                      "cannot be indexed.")
    batch_layout: str = option("auto", "How training lays out a micro-batch: grouped (each prompt once, its "
                               "cache reused by its completions), packed (prompt + completion end to end, no "
                               "padding; flash-attention's variable-length kernel on a GPU), padded (one padded "
                               "row each), or auto: grouped or packed, whichever computes fewer tokens (padded "
                               "or packed with share_prompt_cache off; grouped or padded with several processes).")
    stream_samples: int = option(2, "Completions of the first prompt streamed live each step.")
    token_details: int = option(2, "Rollouts per step stored with each token's text and log-prob, for the "
                                "token heatmap (where the policy was unsure); 0: none.")
    eval_temperature: float = option(0.6, "Sampling temperature for evaluation (R1's pass@1 setting: 0.6; "
                                     "0: greedy, which flips from guessing to reasoning in a step or two "
                                     "and so hides the learning curve).")
    eval_samples: int = option(1, "Samples per evaluation prompt; accuracy is their mean (pass@1).")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_data()
        self._check_sampling()
        self._check_loss()

    def _check_data(self) -> None:
        require((self.task is None) != (self.dataset is None),
                "Give exactly one of task or dataset: GRPO needs one source of prompts.")
        require(self.eval_dataset is None or self.dataset is not None,
                "eval_dataset goes with dataset: a built-in task brings its own test split.")
        require_columns(self.columns, self.dataset)
        require_curriculum(self.curriculum, self.task)
        from engine.behaviours import compile_detectors

        compile_detectors(self.detectors)  # raises naming the detector and the rule
        require_judge(self.judge, self.rewards, self.accuracy_reward)
        require(self.task != "humaneval", "task humaneval is an evaluation set (test split only): train on "
                "MBPP-style data and evaluate on humaneval in an eval run.")
        require(bool(self.rewards), "rewards must name at least one reward, e.g. {\"task\": 1.0}.")
        require(all(math.isfinite(w) for w in self.rewards.values()), "Reward weights must be finite numbers.")
        require(self.task is not None or ("task" not in self.rewards and self.accuracy_reward != "task"),
                "The `task` reward needs a built-in task: with a dataset, name a reward such as math.")
        require(self.eval_examples >= 0 and self.eval_samples >= 1,
                "eval_examples must be >= 0 and eval_samples at least 1.")
        require(self.prompt_style in PROMPT_STYLES,
                f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {self.prompt_style!r}.")

    def _check_sampling(self) -> None:
        require(self.group_size >= 2, "group_size must be at least 2: GRPO compares samples within a group.")
        require(self.prompts_per_step >= 1, "prompts_per_step must be at least 1.")
        require(self.launcher != "torchrun" or self.prompts_per_step >= self.nproc_per_node,
                f"prompts_per_step ({self.prompts_per_step}) must be at least nproc_per_node "
                f"({self.nproc_per_node}): each process samples whole groups.")
        require(self.steps >= 1, "steps must be at least 1.")
        require(self.max_new_tokens >= 1, "max_new_tokens must be at least 1.")
        require(self.temperature > 0, "temperature must be > 0 during training: greedy decoding makes "
                "every sample of a group identical, so every advantage is 0.")
        require(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}.")
        require(self.eval_temperature >= 0, "eval_temperature must be >= 0 (0: greedy).")
        require_generation_backend(self.generation_backend)
        require(self.stream_samples >= 0, "stream_samples must be >= 0.")
        require(0 <= self.token_details <= 64, f"token_details must be in [0, 64], got {self.token_details}.")

    def _check_loss(self) -> None:
        require(self.loss_type in LOSS_TYPES, f"loss_type must be one of {', '.join(LOSS_TYPES)}, "
                f"got {self.loss_type!r}.")
        require(self.scale_rewards in ADVANTAGE_SCALES, f"scale_rewards must be one of "
                f"{', '.join(ADVANTAGE_SCALES)}, got {self.scale_rewards!r}.")
        require(0 <= self.epsilon_low < 1 and self.epsilon_high >= 0,
                "epsilon_low must be in [0, 1) and epsilon_high >= 0: they bound the ratio to "
                "[1 - epsilon_low, 1 + epsilon_high].")
        require(self.beta >= 0, f"beta must be >= 0, got {self.beta}.")
        require(self.ref_refresh_steps >= 0, "ref_refresh_steps must be >= 0 (0: never refresh).")
        require(self.ref_refresh_steps == 0 or self.beta > 0,
                "ref_refresh_steps needs beta > 0: without a KL penalty there is no reference model.")
        require(not self.ref_offload or self.beta > 0,
                "ref_offload needs beta > 0: without a KL penalty there is no reference model.")
        require(self.num_iterations >= 1, "num_iterations must be at least 1.")
        require(self.max_refills >= 0, f"max_refills must be >= 0, got {self.max_refills}.")
        require(self.batch_layout in BATCH_LAYOUTS, f"batch_layout must be one of {', '.join(BATCH_LAYOUTS)}, "
                f"got {self.batch_layout!r}.")
        require(self.batch_layout != "grouped" or self.share_prompt_cache,
                "batch_layout grouped reuses the prompt cache: it needs share_prompt_cache on.")
        require(self.batch_layout != "grouped" or not self.gradient_checkpointing,
                "batch_layout grouped cannot go with gradient_checkpointing: a checkpointed layer is "
                "replayed without the shared prompt cache; use auto, packed or padded.")
        require(self.old_logprobs in OLD_LOGPROBS, f"old_logprobs must be one of {', '.join(OLD_LOGPROBS)}, "
                f"got {self.old_logprobs!r}.")
        require(self.old_logprobs != "sampler" or self.temperature == 1.0,
                "old_logprobs=sampler needs temperature 1.0: the sampler reports log-probs under the raw logits.")
        require(self.importance_sampling_level in IS_LEVELS, "importance_sampling_level must be one of "
                f"{', '.join(IS_LEVELS)}, got {self.importance_sampling_level!r}.")
        require(self.tis_mode in TIS_MODES, f"tis_mode must be one of {', '.join(TIS_MODES)}, got {self.tis_mode!r}.")
        require(self.tis_cap == 0 or self.tis_cap > 1, f"tis_cap must be 0 (off) or > 1, got {self.tis_cap}.")
        require(self.tis_cap == 0 or self.temperature == 1.0,
                "tis_cap needs temperature 1.0: the sampler reports log-probs under the raw logits, so at "
                "another temperature the two sides would not describe the same distribution.")

    @property
    def batch_size(self) -> int:
        """Completions per step: prompts_per_step * group_size."""
        return self.prompts_per_step * self.group_size

    @property
    def grad_accumulation_steps(self) -> int:
        """Micro-batches accumulated into each optimizer step."""
        return -(-self.batch_size // self.micro_batch_size)


SFT_TEMPLATES = ("none", "auto", "r1_zero", "chat")


@dataclass
class SFTConfig(TrainConfig):
    """Settings of one supervised fine-tuning run (cold start, distillation, rejection-sampled data)."""

    output_dir: str = option("var/runs/sft", "Folder for checkpoints (`checkpoint-<step>/`).")
    learning_rate: float = option(1e-4, "Peak AdamW learning rate.")
    dataset: str | None = option(None, "Path of the training data: rows with `prompt` + `completion`, "
                                 "chat `messages`, or plain `text`.")
    eval_dataset: str | None = option(None, "Path of held-out rows for the eval loss.")
    mix_dataset: str | None = option(None, "Path of a second SFT dataset mixed into the training rows, such as "
                                     "R1's non-reasoning data (writing, factual QA) in its stage-4 SFT.")
    mix_ratio: float = option(0.0, "Rows of mix_dataset per row of dataset, e.g. 0.25: one training row in five "
                              "comes from mix_dataset (drawn without repeats while they last).")
    eval_fraction: float = option(0.0, "Share of the training rows held out for the eval loss when "
                                  "there is no eval_dataset (0: none).")
    task: str | None = option(None, "Built-in task whose reference solutions are the training data "
                              "(instead of dataset).")
    task_options: dict[str, Any] = option({}, "Options for the built-in task, e.g. {\"difficulty\": 2}.")
    train_examples: int | None = option(None, "How many task examples to use (None: the task's default).")
    template: str = option("none", "How prompts are wrapped: none (use the prompt text as given), "
                           "r1_zero, chat, or auto (chat when the tokenizer has one).")
    max_length: int = option(256, "Longest sequence in tokens (prompt + completion); longer rows are cut.")
    packing: bool = option(False, "Pack rows end to end into max_length blocks (fewer pad tokens, faster).")
    epochs: float = option(1.0, "Passes over the training rows (fractions allowed).")
    max_steps: int | None = option(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = option(16, "Sequences per optimizer step.")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.dataset is None or self.task is None,
                "Give at most one of dataset or task (or pass rows to run_sft).")
        require(0 <= self.eval_fraction < 1, f"eval_fraction must be in [0, 1), got {self.eval_fraction}.")
        require((self.mix_dataset is None) == (self.mix_ratio == 0),
                "mix_dataset and mix_ratio go together: name the dataset to mix in and how many of its rows "
                "per training row (e.g. 0.25).")
        require(0 <= self.mix_ratio <= 10, f"mix_ratio must be in [0, 10], got {self.mix_ratio}.")
        require(self.template in SFT_TEMPLATES,
                f"template must be one of {', '.join(SFT_TEMPLATES)}, got {self.template!r}.")
        require(self.max_length >= 2, "max_length must be at least 2 tokens.")
        require(self.epochs > 0, f"epochs must be > 0, got {self.epochs}.")
        require(self.max_steps is None or self.max_steps >= 1, "max_steps must be at least 1 or None.")
        require(self.batch_size >= 1, "batch_size must be at least 1.")
