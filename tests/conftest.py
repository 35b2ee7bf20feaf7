"""Shared fixtures. Everything here talks to the real PostgreSQL, Redis, Celery and daphne."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import procs

ARTIFACTS = procs.ROOT / "test-artifacts"


@dataclass
class Personas:
    """healthchecks' three personas: the owner, a teammate (annotator) and an outsider."""

    owner: Any
    teammate: Any
    outsider: Any
    project: Any
    other_project: Any


@pytest.fixture
def personas(db) -> Personas:
    from django.contrib.auth import get_user_model

    from webapp.projects.models import Role
    from webapp.projects.services import member_add, project_create

    User = get_user_model()
    owner = User.objects.create_user("alice", password="alice-pass-123")
    teammate = User.objects.create_user("bob", password="bob-pass-123")
    outsider = User.objects.create_user("charlie", password="charlie-pass-123")
    project = project_create(name="Alpha", owner=owner, slug="alpha")
    member_add(project=project, user=teammate, role=Role.ANNOTATOR)
    other = project_create(name="Beta", owner=outsider, slug="beta")
    return Personas(owner, teammate, outsider, project, other)


class ApiClient:
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, client: Any, token: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self.headers)

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data, content_type="application/json", headers=self.headers)


@pytest.fixture
def api_for(client):
    from webapp.accounts.services import api_token_create

    def make(user: Any | None) -> ApiClient:
        return ApiClient(client, api_token_create(user=user) if user is not None else None)

    return make


@pytest.fixture(scope="session")
def test_db_name(django_db_setup, django_db_blocker) -> str:
    from django.db import connection

    return connection.settings_dict["NAME"]


@pytest.fixture(scope="session", autouse=True)
def _clean_redis():
    """Start every session with an empty test Redis database (broker + channel layer)."""
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(scope="session")
def server_env(test_db_name, tmp_path_factory, django_db_blocker) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("ponder-data")
    # The starter model is built once per machine (deterministic, cached under var/models),
    # so servers started by tests share the cache that `make demo` uses.
    shared_models = procs.ROOT / "var" / "models"
    shared_models.mkdir(parents=True, exist_ok=True)
    (data_dir / "models").symlink_to(shared_models)
    yield procs.subprocess_env(test_db_name, PONDER_DATA_DIR=str(data_dir))
    # Connections left by servers and by asgiref's threads would block dropping the test database.
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def celery_worker(server_env):
    worker = procs.start_worker(server_env, ARTIFACTS / "logs")
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def live_url(server_env) -> str:
    server, url = procs.start_server(server_env, ARTIFACTS / "logs")
    yield url
    server.stop()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The offline starter base model, built once per machine into var/models (a few
    minutes on two cores the first time), before any worker needs it."""
    from engine.starter import ensure_starter

    return ensure_starter("starter", data_dir=procs.ROOT / "var")
