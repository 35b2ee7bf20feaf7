"""Teams: creating a project, its members page, who may label a queue, the 404 page, the favicon."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.review.conftest import store_traces
from webapp.projects.models import Membership, Project, Role
from webapp.review.filters import parse_filter
from webapp.review.models import Label
from webapp.review.services import queue_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def dana():
    return get_user_model().objects.create_user("dana", email="Dana@example.org", password="dana-pass-123")


def members_url(slug="alpha"):
    return reverse("project-members", args=[slug])


def membership(project, user):
    return Membership.objects.get(project=project, user=user)


# ---- creating and editing a project ------------------------------------------------------------


def test_it_creates_a_project_owned_by_its_creator(client, dana):
    client.force_login(dana)
    assert 'href="/projects/new/"' in client.get(reverse("project-list")).content.decode()
    response = client.post(reverse("project-new"), {"name": "Gamma", "slug": "", "description": "math RL"})
    project = Project.objects.get(name="Gamma")
    assert response.status_code == 302 and response["Location"] == reverse("project-detail", args=[project.slug])
    assert project.slug == "gamma" and project.description == "math RL"
    assert membership(project, dana).role == Role.OWNER


@pytest.mark.parametrize("slug", ["has space", "alpha", "new", "x" * 65])
def test_it_refuses_a_bad_slug_naming_the_field(client, personas, dana, slug):
    client.force_login(dana)
    response = client.post(reverse("project-new"), {"name": "Gamma", "slug": slug})
    assert response.status_code == 400
    assert response.context["form"].errors["slug"], response.context["form"].errors
    assert 'id="errors-slug"' in response.content.decode()
    assert not Project.objects.filter(name="Gamma").exists()
    assert not Membership.objects.filter(user=dana).exists()


def test_owners_edit_the_project_and_others_may_not(client, personas):
    url = reverse("project-edit", args=["alpha"])
    client.force_login(personas.teammate)
    assert client.get(url).status_code == 403
    assert client.post(url, {"name": "Hijacked"}).status_code == 403
    client.force_login(personas.outsider)
    assert client.post(url, {"name": "Hijacked"}).status_code == 404
    client.force_login(personas.owner)
    assert client.get(url).status_code == 200
    assert client.post(url, {"name": "Alpha prime", "description": "renamed"}).status_code == 302
    personas.project.refresh_from_db()
    assert (personas.project.name, personas.project.description, personas.project.slug) == (
        "Alpha prime", "renamed", "alpha")


# ---- the members page ---------------------------------------------------------------------------


def test_every_member_sees_the_list_and_only_owners_the_forms(client, personas):
    client.force_login(personas.teammate)
    body = client.get(members_url()).content.decode()
    assert 'data-member="alice"' in body and 'data-member="bob"' in body and 'id="member-add"' not in body
    client.force_login(personas.owner)
    assert 'id="member-add"' in client.get(members_url()).content.decode()


def test_an_outsider_gets_404_on_every_members_url(client, personas):
    m = membership(personas.project, personas.teammate)
    client.force_login(personas.outsider)
    assert client.get(members_url()).status_code == 404
    assert client.post(reverse("project-member-add", args=["alpha"]), {"who": "charlie", "role": "owner"}).status_code == 404
    assert client.post(reverse("project-member-role", args=["alpha", m.pk]), {"role": "owner"}).status_code == 404
    assert client.post(reverse("project-member-remove", args=["alpha", m.pk])).status_code == 404
    assert membership(personas.project, personas.teammate).role == Role.ANNOTATOR


def test_an_annotator_gets_403_on_every_write(client, personas, dana):
    owner = membership(personas.project, personas.owner)
    client.force_login(personas.teammate)
    assert client.post(reverse("project-member-add", args=["alpha"]), {"who": "dana", "role": "owner"}).status_code == 403
    assert client.post(reverse("project-member-role", args=["alpha", owner.pk]), {"role": "viewer"}).status_code == 403
    assert client.post(reverse("project-member-remove", args=["alpha", owner.pk])).status_code == 403
    assert not Membership.objects.filter(user=dana).exists()
    assert membership(personas.project, personas.owner).role == Role.OWNER


def test_an_owner_adds_by_username_and_by_email_changes_a_role_and_removes(client, personas, dana):
    eve = get_user_model().objects.create_user("eve", email="eve@example.org")
    client.force_login(personas.owner)
    add = reverse("project-member-add", args=["alpha"])
    assert client.post(add, {"who": "dana", "role": "annotator"}).status_code == 302
    assert client.post(add, {"who": "EVE@example.org", "role": "viewer"}).status_code == 302
    assert membership(personas.project, dana).role == Role.ANNOTATOR
    assert membership(personas.project, eve).role == Role.VIEWER
    m = membership(personas.project, eve)
    response = client.post(reverse("project-member-role", args=["alpha", m.pk]), {"role": "owner"}, follow=True)
    assert "eve is now owner" in response.content.decode()
    assert membership(personas.project, eve).role == Role.OWNER
    assert client.post(reverse("project-member-remove", args=["alpha", m.pk])).status_code == 302
    assert not Membership.objects.filter(project=personas.project, user=eve).exists()


@pytest.mark.parametrize(("who", "role", "field", "text"), [
    ("nobody", "viewer", "who", "no user 'nobody'"),
    ("bob", "viewer", "who", "already a member"),
    ("dana", "admin", "role", "Select a valid choice"),
    ("", "viewer", "who", "required"),
])
def test_adding_refuses_naming_the_field(client, personas, dana, who, role, field, text):
    client.force_login(personas.owner)
    response = client.post(reverse("project-member-add", args=["alpha"]), {"who": who, "role": role})
    assert response.status_code == 400
    assert any(text in e for e in response.context["form"].errors[field]), response.context["form"].errors
    assert membership(personas.project, personas.teammate).role == Role.ANNOTATOR
    assert not Membership.objects.filter(user=dana).exists()


def test_the_last_owner_is_neither_demoted_nor_removed(client, personas):
    m = membership(personas.project, personas.owner)
    client.force_login(personas.owner)
    response = client.post(reverse("project-member-role", args=["alpha", m.pk]), {"role": "viewer"}, follow=True)
    assert "role: the last owner cannot be demoted" in response.content.decode()
    response = client.post(reverse("project-member-remove", args=["alpha", m.pk]), follow=True)
    assert "role: the last owner cannot be removed" in response.content.decode()
    assert membership(personas.project, personas.owner).role == Role.OWNER
    # With a second owner, the first may step down.
    bob = membership(personas.project, personas.teammate)
    client.post(reverse("project-member-role", args=["alpha", bob.pk]), {"role": "owner"})
    assert client.post(reverse("project-member-role", args=["alpha", m.pk]), {"role": "viewer"}).status_code == 302
    assert membership(personas.project, personas.owner).role == Role.VIEWER


# ---- who labels a queue -------------------------------------------------------------------------


def post_label(client, queue):
    return client.post(reverse("review-item-label", args=[queue.pk, 1]), json.dumps({"verdict": "accept"}),
                       content_type="application/json")


def label_offered(client, queue) -> bool:
    href = f'href="{reverse("review-label", args=[queue.pk])}"'
    return href in client.get(reverse("review-queues")).content.decode()


def test_a_newly_added_annotator_labels_an_existing_queue_once_assigned(client, personas, dana):
    traces = store_traces(personas)
    queue = queue_create(user=personas.owner, runs=[traces.run], flt=parse_filter({"sort": "best"}), name="q",
                         tags=["readable"], assignees=["bob"], limit=3)
    client.force_login(personas.owner)
    client.post(reverse("project-member-add", args=["alpha"]), {"who": "dana", "role": "annotator"})

    client.force_login(dana)  # a member now, not yet an assignee: no "Label" where it would be refused
    assert not label_offered(client, queue)
    assert post_label(client, queue).status_code == 403
    assert client.post(reverse("review-queue-assignees", args=[queue.pk]), {"assignees": ["dana"]}).status_code == 403

    client.force_login(personas.owner)
    assert 'id="queue-assignees-form"' in client.get(reverse("review-queue", args=[queue.pk])).content.decode()
    response = client.post(reverse("review-queue-assignees", args=[queue.pk]), {"assignees": ["bob", "dana"]})
    assert response.status_code == 302
    assert {u.username for u in queue.assignees.all()} == {"bob", "dana"}

    client.force_login(dana)
    assert label_offered(client, queue)
    assert post_label(client, queue).status_code == 200
    assert Label.objects.filter(user=dana).count() == 1


def test_label_is_offered_only_where_it_works(client, personas):
    traces = store_traces(personas)
    queue = queue_create(user=personas.owner, runs=[traces.run], flt=parse_filter({"sort": "best"}), name="q",
                         tags=["readable"], assignees=[], limit=3)
    vera = get_user_model().objects.create_user("vera")
    Membership.objects.create(project=personas.project, user=vera, role=Role.VIEWER)
    for user, works in ((personas.owner, True), (personas.teammate, False), (vera, False)):
        client.force_login(user)
        assert label_offered(client, queue) is works, user
        detail = client.get(reverse("review-queue", args=[queue.pk])).content.decode()
        assert ('id="start-labelling"' in detail) is works, user
        assert (post_label(client, queue).status_code == 200) is works, user


def test_assignees_must_be_labellers(client, personas):
    traces = store_traces(personas)
    queue = queue_create(user=personas.owner, runs=[traces.run], flt=parse_filter({"sort": "best"}), name="q",
                         tags=["readable"], assignees=["bob"], limit=3)
    client.force_login(personas.owner)
    response = client.post(reverse("review-queue-assignees", args=[queue.pk]), {"assignees": ["charlie"]}, follow=True)
    assert "assignees: not an owner or annotator of Alpha: charlie" in response.content.decode()
    assert [u.username for u in queue.assignees.all()] == ["bob"]


# ---- the 404 page, the favicon, the launch page without a project -----------------------------------


def test_a_404_is_a_styled_page_with_navigation(client, personas, settings):
    assert settings.DEBUG is False
    client.force_login(personas.outsider)
    for url in ("/no-such-page/", reverse("project-detail", args=["alpha"])):
        response = client.get(url)
        body = response.content.decode()
        assert response.status_code == 404
        assert "ponder.css" in body and '<nav>' in body and 'href="/projects/"' in body, url


def test_the_favicon_answers_without_login(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith("ponder/favicon.svg")
    assert client.get(response["Location"]).status_code == 200


def test_the_launch_page_without_a_project_links_to_creating_one(client, dana):
    client.force_login(dana)
    body = client.get(reverse("run-new")).content.decode()
    assert 'href="/projects/new/"' in body and "through the API" not in body


def test_an_owner_who_leaves_lands_on_the_project_list(client, personas):
    bob = membership(personas.project, personas.teammate)
    client.force_login(personas.owner)
    client.post(reverse("project-member-role", args=["alpha", bob.pk]), {"role": "owner"})
    me = membership(personas.project, personas.owner)
    response = client.post(reverse("project-member-remove", args=["alpha", me.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("project-list")
    assert client.get(members_url()).status_code == 404
