from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts import selectors, services
from webapp.accounts.forms import TokenForm
from webapp.projects.selectors import AuthedRequest


@require_http_methods(["GET", "POST"])
def token_list(request: AuthedRequest) -> HttpResponse:
    """The user's API tokens, and a form for a new one whose clear text is shown in this
    one response and never again."""
    form = TokenForm(request.POST) if request.method == "POST" else TokenForm()
    created = None
    if request.method == "POST" and form.is_valid():
        created = services.api_token_create(user=request.user, **form.cleaned_data)
        form = TokenForm()
    response = render(request, "accounts/tokens.html", {
        "form": form, "created": created, "tokens": selectors.api_tokens_for(request.user),
    })
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke(request: AuthedRequest, token_id: int) -> HttpResponse:
    token = services.api_token_revoke(token=selectors.api_token_for(request.user, token_id))
    messages.success(request, f"Token {token.name or token.prefix} revoked: it is refused from now on.")
    return redirect("token-list")
