"""Labels through the JSON endpoint: session auth + CSRF, personas, validation, several annotators."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from webapp.review.filters import parse_filter
from webapp.review.models import Label, ReviewQueue
from webapp.review.services import queue_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(personas, traces) -> ReviewQueue:
    return queue_create(user=personas.owner, runs=[traces.run], flt=parse_filter({"sort": "best"}), name="q",
                        tags=["readable", "repetitive"], assignees=["bob"], limit=5)


def post(client, queue, position, body, **headers):
    return client.post(reverse("review-item-label", args=[queue.pk, position]), json.dumps(body),
                       content_type="application/json", **headers)


def test_an_assigned_annotator_labels_and_relabels(client, personas, queue):
    client.force_login(personas.teammate)
    response = post(client, queue, 1, {"verdict": "accept", "tags": ["readable"], "note": "fine"})
    assert response.status_code == 200
    data = response.json()
    assert data["label"] == {"user": "bob", "verdict": "accept", "tags": ["readable"], "rewritten": "", "note": "fine"}
    assert data["mine"] == 1 and data["position"] == 1 and data["total"] == 5
    post(client, queue, 1, {"verdict": "reject", "tags": [], "rewritten": "<think>short</think> 4"})
    label = Label.objects.get()
    assert (label.verdict, label.tags, label.rewritten) == ("reject", [], "<think>short</think> 4")


def test_several_annotators_and_agreement(client, personas, queue):
    client.force_login(personas.teammate)
    post(client, queue, 2, {"verdict": "accept"})
    client.force_login(personas.owner)
    data = post(client, queue, 2, {"verdict": "reject"}).json()
    assert Label.objects.count() == 2 and data["agreement"] == 0.5
    assert [o["user"] for o in data["others"]] == ["bob"]


def test_who_may_label(client, personas, queue, viewer):
    client.force_login(viewer)
    response = post(client, queue, 1, {"verdict": "accept"})
    assert response.status_code == 403 and response.json()["detail"] == "only owners and annotators label"
    client.force_login(personas.outsider)
    assert post(client, queue, 1, {"verdict": "accept"}).status_code == 404
    queue.assignees.clear()
    client.force_login(personas.teammate)
    response = post(client, queue, 1, {"verdict": "accept"})
    assert response.status_code == 403 and "assigned to others" in response.json()["detail"]
    client.force_login(personas.owner)  # owners always may
    assert post(client, queue, 1, {"verdict": "accept"}).status_code == 200
    assert Label.objects.count() == 1


@pytest.mark.parametrize("body, detail", [
    ({"verdict": "maybe"}, "verdict: must be one of accept, reject, skip"),
    ({"verdict": "accept", "tags": ["nice"]}, "tags: not a tag of this queue: nice"),
    ({"verdict": "accept", "tags": "readable"}, "tags: must be a list of tag names"),
    ({"verdict": "accept", "note": 5}, "note: must be text of at most 10000 characters"),
    ([1, 2], "body: must be a JSON object"),
])
def test_bad_labels_are_refused_with_the_rule(client, personas, queue, body, detail):
    client.force_login(personas.owner)
    response = post(client, queue, 1, body)
    assert response.status_code == 400 and response.json()["detail"].startswith(detail)
    assert not Label.objects.exists()


def test_csrf_is_required(personas, queue):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.owner)
    assert post(client, queue, 1, {"verdict": "accept"}).status_code == 403
    client.get(reverse("review-label", args=[queue.pk]))
    token = client.cookies["csrftoken"].value
    assert post(client, queue, 1, {"verdict": "accept"}, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_items_come_as_json_for_prefetching(client, personas, queue, django_assert_max_num_queries):
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(7):
        data = client.get(reverse("review-item", args=[queue.pk, 2])).json()
    assert data["position"] == 2 and data["rollout"]["reward"] >= 0 and data["label"] is None
    assert data["history_url"].startswith(f"/runs/{data['rollout']['run_id']}/prompts/")
    assert client.get(reverse("review-item", args=[queue.pk, 6])).status_code == 404


def test_the_label_page_opens_at_the_first_unlabelled_item(client, personas, queue, django_assert_max_num_queries):
    client.force_login(personas.teammate)
    post(client, queue, 1, {"verdict": "accept"})
    with django_assert_max_num_queries(10):
        response = client.get(reverse("review-label", args=[queue.pk]))
    assert response.context["item"]["position"] == 2 and response.context["can_label"]
    assert response.context["tag_keys"] == [(1, "readable"), (2, "repetitive")]
    assert client.get(reverse("review-label", args=[queue.pk]) + "?i=1").context["item"]["label"]["verdict"] == "accept"
