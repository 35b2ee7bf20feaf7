"""Launch-form presets: recipes a researcher recognises, as a stage and its settings.

A preset fills the launch form (`/runs/new/?preset=<slug>`); nothing is launched until the
person presses Launch, so a preset may leave out what only they can choose (their dataset)
and name models the operator must allow (`PONDER_ALLOWED_MODELS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webapp.runs.pipelines import R1_ZERO_DEMO

# One GPU, bf16, the policy's activations recomputed: what a 0.5B-1.5B model needs at
# R1-Zero lengths. generation_backend auto samples with vLLM where the worker has it.
ONE_GPU: dict[str, Any] = {"device": "cuda", "dtype": "bfloat16", "gradient_checkpointing": True,
                           "generation_backend": "auto"}
# GRPO on a 0.5B-class model: 16 prompts x 8 samples a step, TRL's learning rate for this
# size, no KL penalty (DAPO); the task's reward and length are the preset's own.
GRPO_05B: dict[str, Any] = {"task": None, "learning_rate": 1e-6, "group_size": 8, "prompts_per_step": 16,
                            "micro_batch_size": 16, "warmup_steps": 10, "eval_every": 25, "beta": 0.0, **ONE_GPU}


@dataclass(frozen=True)
class Preset:
    slug: str
    title: str
    stage: str
    summary: str
    config: dict[str, Any] = field(default_factory=dict)
    still_to_choose: str = ""  # what the person picks before launching


PRESETS: list[Preset] = [
    Preset("r1-zero-starter", "R1-Zero on the starter (CPU, minutes)", "grpo",
           "GRPO from the offline starter base model on arithmetic, with R1-Zero's two rule rewards "
           "(format and the task's grader). Runs on any CPU worker in a few minutes.", dict(R1_ZERO_DEMO)),
    Preset("grpo-qwen-gsm8k", "GRPO on a Qwen2.5-0.5B-class model on GSM8K (one GPU)", "grpo",
           "R1-Zero on a base model: the plain R1-Zero prompt, math-verify on the answer after ####, "
           "8 samples per prompt, no KL penalty (DAPO), 1024-token reasoning.",
           {**GRPO_05B, "model": "Qwen/Qwen2.5-0.5B", "prompt_style": "r1_zero", "max_new_tokens": 1024,
            "rewards": {"format": 0.2, "math": 1.0}, "accuracy_reward": "math", "steps": 500},
           still_to_choose="your GSM8K-layout dataset (question, answer ending in #### n)"),
    Preset("code-rl-mbpp", "Code RL on MBPP-style data", "grpo",
           "GRPO on programming problems: completions run against the row's tests in the sandbox "
           "(the code reward is the share that pass).",
           {**GRPO_05B, "model": "Qwen/Qwen2.5-Coder-0.5B-Instruct", "prompt_style": "chat", "max_new_tokens": 768,
            "rewards": {"format": 0.1, "code": 1.0}, "accuracy_reward": "code", "steps": 300},
           still_to_choose="your MBPP-layout dataset (text, test_list, code)"),
    Preset("distil-1.5b-to-0.5b", "Distil a 1.5B teacher's traces into a 0.5B student", "distill",
           "The teacher answers each prompt 4 times; verified traces (one per prompt) become the "
           "student's SFT data, two epochs as in R1's distillation.",
           {"teacher": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "student": "Qwen/Qwen2.5-0.5B",
            "task": None, "accuracy_reward": "math", "k": 4, "max_new_tokens": 2048, "max_length": 3072,
            "temperature": 0.6, "learning_rate": 1e-5, "epochs": 2.0, "batch_size": 32,
            "num_prompts": 2000, "device": "cuda", "dtype": "bfloat16", "generation_backend": "auto"},
           still_to_choose="your prompt dataset with reference answers"),
]


def get(slug: str) -> Preset | None:
    return next((p for p in PRESETS if p.slug == slug), None)
