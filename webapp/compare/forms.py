"""The new-comparison form: types and choices only; the rules live in services."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from engine import rewards as engine_rewards
from engine import tasks as engine_tasks
from webapp.compare.services import SamplingSpec


class ComparisonForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="Blank: the checkpoints' names.")
    checkpoints = forms.TypedMultipleChoiceField(coerce=int, widget=forms.CheckboxSelectMultiple,
                                                 help_text="Two or more; the first is the diff baseline.")
    prompts = forms.ChoiceField(help_text="A built-in task's split, or a prompt dataset of the project.")
    split = forms.ChoiceField(choices=[("test", "test"), ("train", "train")], initial="test")
    num_prompts = forms.IntegerField(initial=20, help_text="From the start of the split.")
    k = forms.IntegerField(initial=4, help_text="Samples per prompt and checkpoint.")
    temperature = forms.FloatField(initial=0.6)
    top_p = forms.FloatField(initial=0.95)
    max_new_tokens = forms.IntegerField(initial=128)
    rewards = forms.MultipleChoiceField(required=False, initial=["format"], widget=forms.CheckboxSelectMultiple,
                                        help_text="Scored on every sample, the same for all checkpoints.")
    accuracy_reward = forms.ChoiceField(initial="task", help_text="The reward whose 1.0 marks a correct sample.")
    seed = forms.IntegerField(initial=0)

    def __init__(self, *args: Any, checkpoints: list[Any], datasets: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = cast("dict[str, forms.ChoiceField]", self.fields)  # the four set here are choice fields
        fields["checkpoints"].choices = [(c.pk, f"{c.run.name} @ step {c.step} ({c.run.project.name})")
                                         for c in checkpoints]
        fields["prompts"].choices = (
            [(f"task:{t}", f"task: {t}") for t in engine_tasks.names()]
            + [(f"dataset:{d.pk}", f"dataset: {d.name} v{d.version}") for d in datasets])
        names = engine_rewards.names()
        fields["rewards"].choices = [(n, n) for n in names]
        fields["accuracy_reward"].choices = [("task", "task (its own grader)")] + [(n, n) for n in names]

    def spec(self) -> SamplingSpec:
        data = self.cleaned_data
        kind, _, value = data["prompts"].partition(":")
        return SamplingSpec(
            task=value if kind == "task" else None, dataset_id=int(value) if kind == "dataset" else None,
            split=data["split"], num_prompts=data["num_prompts"], k=data["k"], temperature=data["temperature"],
            top_p=data["top_p"], max_new_tokens=data["max_new_tokens"], rewards=tuple(data["rewards"]),
            accuracy_reward=data["accuracy_reward"], seed=data["seed"])
