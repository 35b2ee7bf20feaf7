from __future__ import annotations

from django import forms

from webapp.accounts.models import Scope
from webapp.accounts.services import MAX_EXPIRY_DAYS


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To recognise it by, e.g. the machine or the script using it.")
    scope = forms.ChoiceField(choices=Scope.choices, initial=Scope.FULL,
                              help_text="ingest: enough for a logging client (external runs), nothing more.")
    expires_in_days = forms.IntegerField(
        label="Expires in (days)", required=False, min_value=1, max_value=MAX_EXPIRY_DAYS,
        help_text=f"1 to {MAX_EXPIRY_DAYS}; blank: never expires.",
    )


class JoinForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
