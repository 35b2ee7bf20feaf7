"""API authentication, and what a token's scope lets it do (the one place that says so).

A `full` token may do all its user may. An `ingest` token is for logging clients (the
Python client, a TRL callback): it reads, creates `external` runs and writes metrics,
rollouts, checkpoints and the finish into external runs; it launches nothing Ponder runs,
cancels and resumes nothing. Anything it is not granted here is refused with 403, so a new
endpoint is closed to it until listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from webapp.accounts.models import ApiToken, Scope
from webapp.accounts.services import token_for
from webapp.runs import stages
from webapp.runs.selectors import run_for

API_ROOT = "api/v1/"  # where webapp/urls.py mounts the API
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _refuse(what: str) -> PermissionDenied:
    return PermissionDenied(f"this token's scope (ingest) does not allow {what}: an ingest token reads, creates "
                            "external runs and logs into them; use a full token")


def _creates_external_run(request: HttpRequest) -> None:
    try:
        body = json.loads(request.body)
    except ValueError:
        return  # not JSON: the endpoint answers 400 and creates nothing
    stage = body.get("stage") if isinstance(body, dict) else None
    if isinstance(stage, str) and stage != stages.EXTERNAL:
        raise _refuse(f"launching {stage[:40]} runs")


def _logs_into_external_run(request: HttpRequest) -> None:
    assert request.resolver_match is not None
    try:
        run_id = int(request.resolver_match.kwargs["run_id"])
    except (KeyError, ValueError):
        return  # the endpoint answers 422 and writes nothing
    run = run_for(request.user, run_id)  # 404 for a run its user may not see, as the endpoint would
    if run.stage != stages.EXTERNAL:
        raise _refuse(f"writing to a {run.stage} run (Ponder logs its own runs)")


# Routes (below API_ROOT) an ingest token may write to, each with its own check.
INGEST_WRITES: dict[str, Callable[[HttpRequest], None]] = {
    "runs": _creates_external_run,
    "runs/<run_id>/metrics": _logs_into_external_run,
    "runs/<run_id>/rollouts": _logs_into_external_run,
    "runs/<run_id>/checkpoints": _logs_into_external_run,
    "runs/<run_id>/finish": _logs_into_external_run,
}


def check_scope(request: HttpRequest, token: ApiToken) -> None:
    """Raise PermissionDenied (403 {"detail": ...}) when the token's scope does not allow this request."""
    if token.scope == Scope.FULL or request.method in READS:
        return
    match = request.resolver_match
    route = match.route.partition(API_ROOT)[2] if match is not None else ""
    check = INGEST_WRITES.get(route)
    if check is None:
        raise _refuse(f"{request.method} {request.path}")
    check(request)


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        api_token = token_for(token)  # never cached: a revoked or expired token is refused at once
        if api_token is None:
            return None
        request.user = api_token.user
        check_scope(request, api_token)
        return api_token.user


# Scripts use bearer tokens; the browser's own pages call the API with the session (and CSRF).
AUTH = [BearerToken(), SessionAuth()]
