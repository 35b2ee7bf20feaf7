"""Inviting someone with no account by e-mail: a single-use link that makes an account and a
membership with the invited role; owners only; used, withdrawn and expired links refused."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from webapp.projects.models import Invitation, Membership

pytestmark = pytest.mark.django_db


def invite(client, personas, email="dana@example.org", role="annotator", capture=None):
    client.force_login(personas.owner)
    with capture(execute=True):  # the e-mail goes once the invitation commits
        response = client.post(reverse("project-member-add", args=["alpha"]), {"who": email, "role": role})
    assert response.status_code == 302, response.content
    return re.search(r"http://testserver(/invitations/[^/\s]+/)", mail.outbox[-1].body).group(1)


def test_an_invited_address_gets_a_link_that_makes_an_account_and_a_member(client, personas,
                                                                          django_capture_on_commit_callbacks):
    link = invite(client, personas, capture=django_capture_on_commit_callbacks)
    message = mail.outbox[-1]
    assert message.to == ["dana@example.org"] and "Alpha" in message.subject and "as annotator" in message.body
    invitation = Invitation.objects.get()
    token = link.split("/")[2]
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()  # only the hash is kept
    page = client.get(reverse("project-members", args=["alpha"])).content.decode()
    assert 'data-invitation="dana@example.org"' in page
    client.logout()
    assert "invites <b>dana@example.org</b>" in client.get(link).content.decode()
    weak = client.post(link, {"username": "dana", "password": "123"})
    assert weak.status_code == 400 and "password:" in weak.content.decode()
    assert not get_user_model().objects.filter(username="dana").exists()  # nothing made on a refusal
    taken = client.post(link, {"username": "bob", "password": "a-long-fine-passphrase"})
    assert "&#x27;bob&#x27; is taken" in taken.content.decode()
    joined = client.post(link, {"username": "dana", "password": "a-long-fine-passphrase"})
    assert joined["Location"] == reverse("project-detail", args=["alpha"])
    dana = get_user_model().objects.get(username="dana")
    assert dana.email == "dana@example.org"
    assert Membership.objects.get(user=dana, project=personas.project).role == "annotator"
    assert client.get(reverse("project-detail", args=["alpha"])).status_code == 200  # signed in
    client.logout()
    assert client.get(link).status_code == 404  # used once
    assert client.post(link, {"username": "eve", "password": "a-long-fine-passphrase"}).status_code == 404


def test_someone_signed_in_joins_as_themselves_and_keeps_a_higher_role(client, personas,
                                                                       django_capture_on_commit_callbacks):
    link = invite(client, personas, email="charlie@example.org", role="viewer", capture=django_capture_on_commit_callbacks)
    client.force_login(personas.outsider)
    client.post(link)
    assert Membership.objects.get(user=personas.outsider, project=personas.project).role == "viewer"
    link = invite(client, personas, email="bob@example.org", role="viewer", capture=django_capture_on_commit_callbacks)
    client.force_login(personas.teammate)  # an annotator already: an invitation never lowers that
    client.post(link)
    assert Membership.objects.get(user=personas.teammate, project=personas.project).role == "annotator"


def test_withdrawn_and_expired_links_fail_and_only_owners_invite(client, personas, django_capture_on_commit_callbacks):
    link = invite(client, personas, capture=django_capture_on_commit_callbacks)
    invitation = Invitation.objects.get()
    client.post(reverse("project-invitation-revoke", args=["alpha", invitation.pk]))
    client.logout()
    assert 'id="invitation-invalid"' in client.get(link).content.decode()
    link = invite(client, personas, capture=django_capture_on_commit_callbacks)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client.logout()
    assert client.get(link).status_code == 404
    client.force_login(personas.teammate)
    sent = len(mail.outbox)
    assert client.post(reverse("project-member-add", args=["alpha"]), {"who": "x@example.org",
                                                                       "role": "owner"}).status_code == 403
    assert len(mail.outbox) == sent
