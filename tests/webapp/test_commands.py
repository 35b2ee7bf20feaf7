import io

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_one_working_token(personas, client):
    out = io.StringIO()
    call_command("create_api_token", "alice", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdr_")
    response = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {lines[0]}"})
    assert response.status_code == 200


def test_create_api_token_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_token", "nobody", stdout=io.StringIO())


def test_ensure_demo_user_prints_a_password_that_logs_in(db, client):
    out = io.StringIO()
    call_command("ensure_demo_user", stdout=out)
    password = out.getvalue().strip()
    response = client.post("/accounts/login/", {"username": "demo", "password": password})
    assert response.status_code == 302 and client.get("/runs/").status_code == 200


def test_commands_start_without_loading_the_engine_stages():
    """`manage.py create_api_token` and friends run Django's system checks and import the
    URLconf; neither may pull in the stage table (and with it torch, seconds per command)."""
    import os
    import subprocess
    import sys

    from tests.procs import ROOT

    probe = ("import sys; from django.core.management import call_command; call_command('check', verbosity=0); "
             "import webapp.urls, webapp.asgi; print(sorted({'torch', 'engine.stages'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
