"""Forms only shape input; the rules (unique slug, last owner) live in services.py."""

from __future__ import annotations

from django import forms

from webapp.projects.models import Role


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(max_length=64, required=False,
                           help_text="Letters, digits, hyphens, underscores; in the URL. Empty: made from the name.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ProjectEditForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class MemberAddForm(forms.Form):
    who = forms.CharField(label="Username or e-mail", max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
