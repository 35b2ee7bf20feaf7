from __future__ import annotations

from typing import Any, cast

from django import forms


class ImportForm(forms.Form):
    project = forms.ChoiceField(help_text="A project you own.")
    name = forms.CharField(max_length=200, required=False,
                           help_text="Blank: the file's name. An existing name gets the next version.")
    file = forms.FileField(required=False,
                           help_text=".jsonl, .csv, .parquet, or a .zip of a datasets save_to_disk folder.")
    hub = forms.CharField(required=False, max_length=300, label="Or a Hugging Face dataset",
                          help_text="owner/name[:config][@split], e.g. openai/gsm8k:main@train, where the operator "
                                    "allows it (PONDER_ALLOWED_DATASETS); a worker loads it.")
    columns = forms.JSONField(required=False, label="Column mapping",
                              widget=forms.Textarea(attrs={"rows": 2, "class": "mono"}),
                              help_text='Optional: which column is what, e.g. {"prompt": "question", "answer": '
                                        '"final"}. Blank: a layout Ponder does not recognise gets a page to choose.')

    def __init__(self, *args: Any, projects: list[Any], refused: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projects = {p.slug: p for p in projects}
        cast(forms.ChoiceField, self.fields["project"]).choices = [(p.slug, p.name) for p in projects]
        self.refused = refused
        if refused:  # the upload was stopped at the cap: say that, not "this field is required"
            self.fields["file"].required = False

    def clean_file(self) -> Any:
        if self.refused:
            raise forms.ValidationError(self.refused)
        return self.cleaned_data["file"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.refused and bool(data.get("file")) == bool((data.get("hub") or "").strip()):
            both = bool(data.get("file"))
            raise forms.ValidationError("Give a file to upload or a Hugging Face dataset name, not both." if both
                                        else "Choose a file to upload, or name a Hugging Face dataset.")
        return data


# Columns whose names say what they hold, tried in order for each role's first guess.
GUESSES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question", "problem", "instruction", "input", "query", "text"),
    "answer": ("answer", "final_answer", "final", "target", "label", "ground_truth", "output"),
    "solution": ("solution",),
    "tests": ("tests", "test", "test_code", "unit_tests"),
    "entry_point": ("entry_point", "function", "function_name"),
    "language": ("language", "lang"),
    "system_prompt": ("system_prompt", "system"),
    "id": ("id", "uid", "task_id", "idx"),
}
ROLE_HELP = {
    "prompt": "What the model is asked (required).",
    "answer": "The reference answer rewards compare against.",
    "solution": "A worked solution; its last \\boxed{} is the answer.",
    "tests": "Python tests that grade code answers.",
    "entry_point": "The function the tests call (check(entry_point) is added).",
    "language": "The prompt's language code, per row.",
    "system_prompt": "A system message put before the prompt.",
    "id": "A stable id for each row.",
}


class ColumnsForm(forms.Form):
    """One choice per role: a column of the upload or none."""

    def __init__(self, *args: Any, names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lowered = {n.lower(): n for n in names}
        taken: set[str] = set()
        for role, help_text in ROLE_HELP.items():
            guess = next((lowered[g] for g in GUESSES[role] if g in lowered and lowered[g] not in taken), "")
            if role == "solution" and self.fields["answer"].initial:
                guess = ""  # one reference answer: an answer column wins over a worked solution
            taken.add(guess)
            self.fields[role] = forms.ChoiceField(choices=[("", "—")] + [(n, n) for n in names], required=False,
                                                  initial=guess, help_text=help_text, label=role.replace("_", " "))

    def mapping(self) -> dict[str, str]:
        return {role: column for role, column in self.cleaned_data.items() if column}
