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
