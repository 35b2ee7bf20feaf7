"""Helpers for benchmarks: a scratch database, a daphne server, a user with a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scratch_env(db_name: str) -> dict[str, str]:
    """Environment for a scratch database next to the configured one (created and migrated)."""
    from webapp.localservices import discover, ensure_database

    urls = discover()
    parts = urlsplit(urls["DATABASE_URL"])
    db_url = urlunsplit(parts._replace(path=f"/{db_name}"))
    ensure_database(db_url)
    env = {**os.environ, **urls, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "webapp.settings",
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return env


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def owner_with_token(username: str = "bench") -> tuple[object, str]:
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import api_token_create
    from webapp.projects.services import personal_project

    user, _ = get_user_model().objects.get_or_create(username=username)
    personal_project(user=user)
    return user, api_token_create(user=user)
