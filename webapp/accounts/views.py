from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts import selectors, services
from webapp.accounts.forms import JoinForm, TokenForm
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


@login_not_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation link: join as the signed-in person, or make an account and join."""
    invitation = services.invitation_for(token)
    if invitation is None:
        return render(request, "accounts/invitation.html", {"invalid": True}, status=404)
    form = JoinForm(request.POST or None)
    errors: list[str] = []
    if request.method == "POST":
        signed_in = request.user if request.user.is_authenticated else None
        if signed_in is not None or form.is_valid():
            try:
                membership = services.invitation_accept(
                    token=token, user=signed_in, username=form.cleaned_data.get("username", "") if signed_in is None
                    else "", password=form.cleaned_data.get("password", "") if signed_in is None else "")
            except ValidationError as e:
                errors = [f"{k}: {m}" for k, ms in e.message_dict.items() for m in ms]
            else:
                if signed_in is None:
                    login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, f"You joined {membership.project.name} as {membership.role}.")
                return redirect("project-detail", slug=membership.project.slug)
    return render(request, "accounts/invitation.html", {"invitation": invitation, "form": form, "errors": errors},
                  status=400 if errors else 200)
