"""Every page requires login and shows a project's data only to its members."""

import pytest
from django.urls import reverse

from webapp.datasets.models import Dataset
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def things(personas):
    run = Run.objects.create(project=personas.project, name="alpha-run", stage="grpo", status="running")
    dataset = Dataset.objects.create(project=personas.project, name="alpha-data")
    return {"run": run, "dataset": dataset}


def pages(things):
    return [
        reverse("project-detail", args=["alpha"]),
        reverse("run-detail", args=[things["run"].pk]),
        reverse("run-metrics", args=[things["run"].pk]),
        reverse("dataset-detail", args=[things["dataset"].pk]),
    ]


LISTS = ["project-list", "run-list", "dataset-list"]


def test_anonymous_visitors_are_sent_to_log_in(client, things):
    for url in pages(things) + [reverse(name) for name in LISTS]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url


def test_the_owner_and_a_teammate_see_every_page(client, personas, things):
    for user in (personas.owner, personas.teammate):
        client.force_login(user)
        for url in pages(things):
            assert client.get(url).status_code == 200, (user, url)


def test_an_outsider_gets_404_everywhere(client, personas, things):
    client.force_login(personas.outsider)
    for url in pages(things):
        assert client.get(url).status_code == 404, url


def test_lists_show_only_the_callers_projects(client, personas, things):
    client.force_login(personas.outsider)
    for name in LISTS:
        body = client.get(reverse(name)).content.decode()
        assert "alpha-run" not in body and "alpha-data" not in body and "Alpha" not in body, name
    client.force_login(personas.owner)
    assert "alpha-run" in client.get(reverse("run-list")).content.decode()
    assert "alpha-data" in client.get(reverse("dataset-list")).content.decode()


def test_login_with_django_form_fields(client, personas):
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302
    assert client.get(reverse("run-list")).status_code == 200


def test_only_owners_cancel(client, personas, things):
    run = things["run"]
    client.force_login(personas.teammate)
    assert client.post(reverse("run-cancel", args=[run.pk])).status_code == 403
    client.force_login(personas.outsider)
    assert client.post(reverse("run-cancel", args=[run.pk])).status_code == 404
    client.force_login(personas.owner)
    client.post(reverse("run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.stop_requested


def test_model_text_is_escaped_on_the_run_page(client, personas):
    run = Run.objects.create(project=personas.project, name="<script>alert(1)</script>", stage="grpo",
                             status="failed", error="<img src=x onerror=alert(1)>")
    client.force_login(personas.owner)
    body = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body
    assert "<img src=x" not in body
