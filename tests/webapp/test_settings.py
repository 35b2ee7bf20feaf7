import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.procs import ROOT
from webapp.env import env_bool, env_int, env_url


def test_env_bool_fails_loudly(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG must be true or false"):
        env_bool("DEBUG", False)
    monkeypatch.setenv("DEBUG", "yes")
    assert env_bool("DEBUG", False) is True


def test_env_int_and_url_fail_loudly(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env_int("N", 1)
    monkeypatch.setenv("DATABASE_URL", "mysql://x/y")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must be a URL starting with postgres"):
        env_url("DATABASE_URL", "", schemes=("postgres", "postgresql"))


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", **env}
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set while browser tests run; never in deployment
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True)


def test_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING",
                     SECRET_KEY="x" * 20 + "-a-long-random-production-secret-key-0123456789",
                     DEBUG="false", PONDER_HTTPS="true", ALLOWED_HOSTS="ponder.example.com")
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", PONDER_HTTPS="true", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_without_a_secret_key_a_random_one_is_kept_in_the_data_folder(tmp_path):
    show = ("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    env = {"PONDER_DATA_DIR": str(tmp_path), "SECRET_KEY": "", "PONDER_HTTPS": "false"}
    first, second = _manage(*show, **env), _manage(*show, **env)
    key = first.stdout.strip()
    assert first.returncode == 0 and len(key) >= 50 and second.stdout.strip() == key  # the same after a restart
    assert "insecure" not in key and (tmp_path / "secret_key").stat().st_mode & 0o077 == 0  # owner only
    other = _manage(*show, PONDER_DATA_DIR=str(tmp_path / "other"), SECRET_KEY="", PONDER_HTTPS="false")
    assert other.stdout.strip() != key  # each installation its own


def test_a_bad_debug_value_stops_the_app():
    result = _manage("check", DEBUG="sure")
    assert result.returncode != 0 and "DEBUG must be true or false" in result.stderr


@pytest.mark.django_db
def test_models_and_migrations_agree():
    result = _manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
