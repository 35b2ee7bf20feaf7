"""Fixtures for the client's tests: a token for the project owner, fast retry settings.

`ponder_client` lives in `client/` with its own pyproject; when it is not installed
(`pip install -e client`), the tests import it from there.
"""

from __future__ import annotations

import sys

import pytest

from tests import procs

try:
    import ponder_client  # noqa: F401
except ImportError:
    sys.path.insert(0, str(procs.ROOT / "client"))

from ponder_client import ClientOptions  # noqa: E402

# Retries every 0.05-1 s instead of up to 30 s, so outages in tests cost seconds.
FAST = ClientOptions(backoff_base_s=0.1, backoff_cap_s=1.0, connect_deadline_s=60.0, linger_s=0.01, exit_timeout_s=5.0)


@pytest.fixture
def owner_token(personas) -> str:
    from webapp.accounts.services import api_token_create

    return api_token_create(user=personas.owner)


@pytest.fixture
def teammate_token(personas) -> str:
    from webapp.accounts.services import api_token_create

    return api_token_create(user=personas.teammate)


def rollout(step: int, i: int, *, text: str = "", **extra) -> dict:
    """A small rollout whose identity is (step, prompt p{i % 8}, sample_index i // 8)."""
    body = {"step": step, "prompt": f"p{i % 8}: what is {i % 8} + 1?", "sample_index": i // 8,
            "completion": f"<think>{text or 'add one'}</think> {i % 8 + 1}", "rewards": {"math": 1.0, "format": 0.5}}
    body.update(extra)
    return body


def stored_counts(run_id: int) -> tuple[int, int]:
    """(rows, distinct identities) stored for a run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (step, prompt_hash, sample_index)) FROM runs_rollout "
                       "WHERE run_id = %s", [run_id])
        return cursor.fetchone()
