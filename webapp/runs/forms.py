"""Launch forms generated from the engine's stage config dataclasses.

The dataclass is the single source of truth: its fields give the inputs, their help text
and defaults; its `__post_init__` gives the rules (the form shows its sentence).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings

from engine.config import ADVANTAGE_SCALES, BATCH_LAYOUTS, IS_LEVELS, LOSS_TYPES, OLD_LOGPROBS, TIS_MODES

# Fields the web app fills itself.
HIDDEN_FIELDS = {"output_dir"}

KNOWN_CHOICES: dict[str, tuple[str, ...]] = {
    "lr_schedule": ("constant", "linear", "cosine"),
    "loss_type": LOSS_TYPES,
    "importance_sampling_level": IS_LEVELS,
    "tis_mode": TIS_MODES,
    "batch_layout": BATCH_LAYOUTS,
    "old_logprobs": OLD_LOGPROBS,
    "scale_rewards": ADVANTAGE_SCALES,
    "dtype": ("float32", "bfloat16", "float16"),
    "prompt_style": ("auto", "r1_zero", "chat"),
    "generation_backend": ("torch", "vllm", "auto"),
    "template": ("none", "auto", "r1_zero", "chat"),
    "device": ("cpu", "cuda"),
    "launcher": ("none", "torchrun", "accelerate"),
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


LORA_DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


class LoraWidget(forms.MultiWidget):
    template_name = "runs/widgets/lora.html"  # each input with its label (webapp/runs/templates/)

    def __init__(self) -> None:
        super().__init__([forms.CheckboxInput(), forms.NumberInput(attrs={"min": 1}), forms.NumberInput(attrs={"min": 1}),
                          forms.NumberInput(attrs={"step": "any", "min": 0}), forms.TextInput()])

    def decompress(self, value: Any) -> list[Any]:
        if not isinstance(value, dict):
            return [False, *LORA_DEFAULTS.values()]
        lora = {**LORA_DEFAULTS, **value}
        targets = lora["target_modules"]
        return [True, lora["r"], lora["alpha"], lora["dropout"],
                targets if isinstance(targets, str) else ", ".join(map(str, targets))]


class LoraField(forms.MultiValueField):
    """LoRA as fields (on or off, rank, alpha, dropout, target modules), giving the engine's
    `lora` setting: a dict, or None to train every weight."""

    widget = LoraWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (forms.BooleanField(required=False), forms.IntegerField(min_value=1, max_value=4096, required=False),
                  forms.IntegerField(min_value=1, required=False), forms.FloatField(min_value=0, max_value=0.99,
                                                                                    required=False),
                  forms.CharField(required=False, max_length=500))
        super().__init__(fields=fields, require_all_fields=False, **kwargs)

    def compress(self, data_list: list[Any]) -> dict[str, Any] | None:
        if not data_list or not data_list[0]:
            return None
        r, alpha, dropout, targets = (v if v not in (None, "") else d for v, d in zip(data_list[1:], LORA_DEFAULTS.values(),
                                                                                     strict=True))
        names = [t.strip() for t in str(targets).split(",") if t.strip()]
        return {"r": r, "alpha": alpha, "dropout": dropout,
                "target_modules": "all-linear" if names in ([], ["all-linear"]) else names}


def _form_field(name: str, tp: Any, default: Any, help_text: str) -> forms.Field:
    base, optional = _unwrap_optional(tp)
    origin = typing.get_origin(base) or base
    label = name.replace("_", " ")
    common = {"label": label, "help_text": help_text, "initial": default, "required": False}
    if name == "lora":
        return LoraField(**common)
    if base is bool:
        return forms.BooleanField(**common)
    if name in KNOWN_CHOICES:
        choices = [("", "—")] if optional else []
        return forms.ChoiceField(choices=choices + [(c, c) for c in KNOWN_CHOICES[name]], **common)
    if name == "task":
        from engine.tasks import names

        return forms.ChoiceField(choices=[("", "— (use a dataset)")] + [(t, t) for t in names()], **common)
    if base in (int, float):
        top = settings.PONDER_LIMITS.get(name)  # the operator's maximum, shown and enforced
        if top is not None:
            common = {**common, "max_value": top, "help_text": f"{help_text} At most {top} on this server."}
        return forms.IntegerField(**common) if base is int else forms.FloatField(**common)
    if origin in (dict, list):
        return forms.JSONField(**{**common, "widget": forms.Textarea(attrs={"rows": 2, "class": "mono"})})
    return forms.CharField(**common)


def config_fields(config_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.init and f.name not in HIDDEN_FIELDS]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


# Launch form sections, in reading order; a field goes to the first whose names hold it.
SECTIONS: list[tuple[str, set[str]]] = [
    ("Model", {"model", "teacher", "student", "dtype", "lora", "template", "prompt_style", "prefill_think",
               "attn_implementation"}),
    ("Data", {"task", "task_options", "curriculum", "dataset", "eval_dataset", "columns", "mix_dataset",
              "mix_ratio", "train_examples", "split", "num_prompts",
              "eval_fraction", "max_length", "packing"}),
    ("Rewards", {"rewards", "accuracy_reward", "custom_rewards", "detectors", "judge", "vote_by", "pass_at", "min_language",
                 "require_reasoning", "drop_code_in_reasoning", "dedup_threshold", "max_per_prompt",
                 "pass_rate_band", "max_paragraph_chars"}),
    ("Phases", {"rejection", "sft"}),  # distillation's two stages, each a config of its own
    ("Algorithm", {"loss_type", "scale_rewards", "epsilon_low", "epsilon_high", "beta", "ref_refresh_steps",
                   "num_iterations", "importance_sampling_level", "tis_cap", "tis_mode", "old_logprobs",
                   "dynamic_sampling", "max_refills", "mask_truncated_completions"}),
    ("Sampling", {"group_size", "prompts_per_step", "prompts_per_batch", "k", "max_new_tokens", "temperature",
                  "top_p", "stop", "generation_backend", "stream_samples", "token_details", "eval_temperature",
                  "eval_samples", "eval_examples"}),
    ("Schedule", {"steps", "max_steps", "epochs", "learning_rate", "lr_schedule", "warmup_steps", "weight_decay",
                  "max_grad_norm", "eval_every", "save_every", "seed"}),
    ("Resources", {"device", "micro_batch_size", "batch_size", "batch_layout", "share_prompt_cache", "num_threads",
                   "launcher", "nproc_per_node", "sharding", "gradient_checkpointing", "ref_offload"}),
]


def section_of(name: str) -> str:
    return next((title for title, names in SECTIONS if name in names), "Other")


class LaunchForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="A name to find this run by.")

    def __init__(self, *args: Any, config_cls: type, initial_config: dict[str, Any] | None = None,
                 model_choices: Sequence[tuple[str, str]] = (),
                 dataset_choices: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_cls = config_cls
        hints = typing.get_type_hints(config_cls)
        initial_config = initial_config or {}
        for f in config_fields(config_cls):
            default = initial_config.get(f.name, _default(f))
            field = _form_field(f.name, hints[f.name], default, f.metadata.get("help", ""))
            self.fields[f"cfg_{f.name}"] = field
        self.model_choices = list(model_choices)
        self.dataset_choices = list(dataset_choices)

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The config fields by section (SECTIONS order, then Other), each in config order."""
        grouped: dict[str, list[forms.BoundField]] = {}
        for name in self.config_field_names():
            grouped.setdefault(section_of(name[4:]), []).append(self[name])
        order = [title for title, _ in SECTIONS] + ["Other"]
        return [(title, grouped[title]) for title in order if title in grouped]

    def config_field_names(self) -> list[str]:
        return [n for n in self.fields if n.startswith("cfg_")]

    def config(self) -> dict[str, Any]:
        """The cleaned config, with blank optional fields as None and unset booleans False."""
        hints = typing.get_type_hints(self.config_cls)
        out: dict[str, Any] = {}
        for f in config_fields(self.config_cls):
            value = self.cleaned_data.get(f"cfg_{f.name}")
            _, optional = _unwrap_optional(hints[f.name])
            if value in ("", None):
                if optional:
                    out[f.name] = None
                continue  # the dataclass default applies
            out[f.name] = value
        return out

    def field_of(self, message: str) -> str | None:
        """The config field an engine sentence starts with ("group_size must be ..."), if any."""
        first = message.split(" ", 1)[0].strip(":,.")
        return first if f"cfg_{first}" in self.fields else None

    def add_config_error(self, message: str) -> None:
        """Attach the engine's sentence to the field it starts with, else to the form."""
        field = self.field_of(message)
        self.add_error(f"cfg_{field}" if field else None, message)
