"""SFT datasets from traces: a queue's accepted items (rewrites preferred) or a filter, versioned."""

import pytest
from django.urls import reverse

from tests.review.conftest import assert_text_not_html
from webapp.datasets.models import Dataset
from webapp.review.filters import parse_filter
from webapp.review.models import Label
from webapp.review.services import queue_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled_queue(personas, traces):
    queue = queue_create(user=personas.owner, runs=[traces.run], flt=parse_filter({"q": "script"}), name="hostile",
                         tags=["readable"], assignees=["bob"], limit=4)
    carol = type(personas.owner).objects.create_user("carol")
    items = list(queue.items.select_related("rollout").order_by("position"))
    votes = [("accept", "accept", ""), ("accept", "reject", "reject"), ("reject", "", ""), ("accept", "skip", "")]
    for item, (a, b, c) in zip(items, votes, strict=True):
        for user, verdict in ((personas.owner, a), (personas.teammate, b), (carol, c)):
            if verdict:
                Label.objects.create(rollout=item.rollout, user=user, verdict=verdict)
    Label.objects.filter(rollout=items[0].rollout, user=personas.teammate).update(rewritten="<think>clean</think> 0")
    return queue, items


def test_accepted_items_become_a_dataset_preferring_rewrites(client, personas, labelled_queue):
    queue, items = labelled_queue
    client.force_login(personas.owner)
    response = client.post(reverse("review-queue-dataset", args=[queue.pk]), {"name": "cold-start"})
    dataset = Dataset.objects.get()
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert (dataset.kind, dataset.version, dataset.row_count) == ("sft", 1, 2)  # items 1 and 4 (2 is 1-2, 3 reject)
    rows = list(dataset.prompts.order_by("index"))
    assert rows[0].completion == "<think>clean</think> 0" and rows[0].metadata["source"]["rewritten"]
    assert rows[1].completion == items[3].rollout.completion and rows[1].text == items[3].rollout.prompt
    assert dataset.source["queue"] == queue.pk and dataset.source["rewritten"] == 1
    client.post(reverse("review-queue-dataset", args=[queue.pk]), {"name": "cold-start", "layout": "messages"})
    v2 = Dataset.objects.get(version=2)
    assert v2.prompts.first().messages[1] == {"role": "assistant", "content": "<think>clean</think> 0"}


def test_only_owners_build_datasets(client, personas, labelled_queue, viewer):
    queue, _ = labelled_queue
    for user in (personas.teammate, viewer):
        client.force_login(user)
        response = client.post(reverse("review-queue-dataset", args=[queue.pk]), {"name": "x"})
        assert response.status_code == 302 and not Dataset.objects.exists()
    client.force_login(personas.outsider)
    assert client.post(reverse("review-queue-dataset", args=[queue.pk]), {"name": "x"}).status_code == 404


def test_a_filter_becomes_a_dataset(client, personas, traces):
    client.force_login(personas.owner)
    data = {"runs": str(traces.run.pk), "filter": "correct_by=math&correct=yes&step_min=5", "name": "right",
            "limit": "100"}
    response = client.post(reverse("review-filter-dataset"), data)
    dataset = Dataset.objects.get()
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert dataset.row_count == 12 and dataset.source["filter"]["step_min"] == "5"
    client.post(reverse("review-filter-dataset"), data)
    assert sorted(Dataset.objects.values_list("version", flat=True)) == [1, 2]
    response = client.post(reverse("review-filter-dataset"), {**data, "filter": "step_min=99"})
    assert "rows: nothing to put in the dataset" in client.get(response["Location"]).content.decode()


def test_the_preview_shows_model_text_as_text(client, personas, labelled_queue, django_assert_max_num_queries):
    queue, _ = labelled_queue
    client.force_login(personas.owner)
    client.post(reverse("review-queue-dataset", args=[queue.pk]), {"name": "cold-start"})
    dataset = Dataset.objects.get()
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(6):
        body = client.get(reverse("dataset-detail", args=[dataset.pk])).content.decode()
    assert_text_not_html(body)
    assert f"cfg_dataset=dataset:{dataset.pk}" in body and "stage=sft" in body
