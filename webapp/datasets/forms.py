from __future__ import annotations

from typing import Any, cast

from django import forms


class ImportForm(forms.Form):
    project = forms.ChoiceField(help_text="A project you own.")
    name = forms.CharField(max_length=200, required=False,
                           help_text="Blank: the file's name. An existing name gets the next version.")
    file = forms.FileField(help_text=".jsonl, .parquet, or a .zip of a datasets save_to_disk folder.")

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
