"""Login throttling (django-axes): wrong passwords lock that username out from that address,
even the right password then, while everyone else still signs in."""

import pytest
from django.conf import settings
from django.core.management import call_command

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"


def test_repeated_wrong_passwords_lock_the_username_out(client, personas):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(LOGIN, {"username": "alice", "password": "guess"}).status_code == 200  # the form again
    assert client.post(LOGIN, {"username": "alice", "password": "guess"}).status_code == 429
    locked = client.post(LOGIN, {"username": "alice", "password": "alice-pass-123"})
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    assert client.post(LOGIN, {"username": "bob", "password": "bob-pass-123"}).status_code == 302  # others sign in
    call_command("axes_reset", verbosity=0)  # what an operator runs to lift a lockout at once
    assert client.post(LOGIN, {"username": "alice", "password": "alice-pass-123"}).status_code == 302


def test_a_successful_login_clears_the_count(client, personas):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(LOGIN, {"username": "alice", "password": "guess"})
    assert client.post(LOGIN, {"username": "alice", "password": "alice-pass-123"}).status_code == 302
    client.logout()
    client.post(LOGIN, {"username": "alice", "password": "guess"})
    assert client.post(LOGIN, {"username": "alice", "password": "alice-pass-123"}).status_code == 302
