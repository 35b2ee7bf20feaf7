"""Review queues: built from an explorer filter, assigned to members, agreement shown."""

import pytest
from django.urls import reverse

from tests.review.conftest import assert_text_not_html
from webapp.review.models import Label, ReviewQueue
from webapp.runs.models import Rollout

pytestmark = pytest.mark.django_db

FILTER = "correct_by=math&correct=yes&tokens_min=25&step_min=2&sort=longest"


def create(client, traces, **extra):
    data = {"runs": str(traces.run.pk), "filter": FILTER, "name": "long but right", "limit": "10",
            "tags": "readable, repetitive, wrong reasoning", "assignees": ["alice", "bob"], **extra}
    return client.post(reverse("review-queue-new"), data)


def test_an_annotator_builds_a_queue_from_a_filter(client, personas, traces):
    client.force_login(personas.teammate)
    response = create(client, traces)
    queue = ReviewQueue.objects.get()
    assert response["Location"] == reverse("review-queue", args=[queue.pk])
    items = list(queue.items.select_related("rollout").order_by("position"))
    assert [i.position for i in items] == list(range(1, 11)) and queue.item_count == 10
    assert all(i.rollout.rewards["math"] == 1 and i.rollout.token_count >= 25 and i.rollout.step >= 2 for i in items)
    assert [i.rollout.token_count for i in items] == sorted((i.rollout.token_count for i in items), reverse=True)
    assert queue.tags == ["readable", "repetitive", "wrong reasoning"]
    assert {u.username for u in queue.assignees.all()} == {"alice", "bob"}
    assert queue.filter["sort"] == "longest" and queue.filter["runs"] == [traces.run.pk]


def test_viewers_and_outsiders_cannot(client, personas, traces, viewer):
    client.force_login(viewer)
    assert create(client, traces).status_code == 403
    client.force_login(personas.outsider)
    assert create(client, traces).status_code == 404
    assert not ReviewQueue.objects.exists()


@pytest.mark.parametrize("extra, message", [
    ({"assignees": ["charlie"]}, "assignees: not an owner or annotator of Alpha: charlie"),
    ({"filter": "step_min=2000"}, "filter: no rollout matches this filter"),
    ({"filter": "sort=random"}, "sort: must be one of"),
    ({"tags": ",".join(f"t{i}" for i in range(10))}, "tags: at most 9 tags"),
    ({"name": " "}, "name: a queue needs a name"),
    ({"limit": "0"}, "limit: a queue holds 1 to 5000 items"),
])
def test_mistakes_are_named(client, personas, traces, extra, message):
    client.force_login(personas.owner)
    response = create(client, traces, **extra)
    assert response.status_code == 302 and "/explore/" in response["Location"]
    page = client.get(response["Location"]).content.decode()
    assert message in page
    assert not ReviewQueue.objects.exists()


@pytest.fixture
def queue(client, personas, traces):
    client.force_login(personas.owner)
    create(client, traces)
    return ReviewQueue.objects.get()


def test_queue_pages_by_persona(client, personas, queue, viewer):
    pages = [reverse("review-queue", args=[queue.pk]), reverse("review-label", args=[queue.pk]),
             reverse("review-item", args=[queue.pk, 1]), reverse("review-queues")]
    for user in (personas.owner, personas.teammate, viewer):
        client.force_login(user)
        for page in pages:
            assert client.get(page).status_code == 200, (user, page)
    client.force_login(personas.outsider)
    for page in pages[:3]:
        assert client.get(page).status_code == 404, page
    assert "long but right" not in client.get(reverse("review-queues")).content.decode()


def test_agreement_per_item_and_overall(client, personas, queue, viewer, django_assert_max_num_queries):
    items = list(queue.items.order_by("position"))
    carol = type(personas.owner).objects.create_user("carol")
    Label.objects.create(rollout_id=items[0].rollout_id, user=personas.owner, verdict="accept")
    Label.objects.create(rollout_id=items[0].rollout_id, user=personas.teammate, verdict="accept")
    Label.objects.create(rollout_id=items[0].rollout_id, user=carol, verdict="reject")
    Label.objects.create(rollout_id=items[1].rollout_id, user=personas.owner, verdict="accept")
    Label.objects.create(rollout_id=items[1].rollout_id, user=personas.teammate, verdict="accept")
    Label.objects.create(rollout_id=items[2].rollout_id, user=personas.owner, verdict="reject")
    client.force_login(viewer)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("review-queue", args=[queue.pk]))
    assert response.context["judged"] == 2
    assert response.context["agreement"] == pytest.approx((2 / 3 + 1) / 2)
    assert response.context["items"][0].label_summary.agreement == pytest.approx(2 / 3)
    assert response.context["majorities"] == {"accept": 2, "reject": 1, "unlabelled": 7}
    annotators = {a["username"]: a for a in response.context["annotators"]}
    assert annotators["alice"]["total"] == 3 and annotators["carol"]["reject"] == 1


def test_queue_list_shows_progress_and_assignment(client, personas, queue, viewer, django_assert_max_num_queries):
    Label.objects.create(rollout_id=queue.items.first().rollout_id, user=personas.owner, verdict="accept")
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(4):
        response = client.get(reverse("review-queues"))
    q = response.context["queues"][0]
    assert q.labelled == 1 and q.assigned
    client.force_login(viewer)
    assert not client.get(reverse("review-queues")).context["queues"][0].assigned


def test_model_text_on_queue_pages_is_text(client, personas, traces):
    client.force_login(personas.owner)
    create(client, traces, filter="q=script&sort=newest")
    queue = ReviewQueue.objects.get()
    assert Rollout.objects.filter(pk=queue.items.first().rollout_id, final_answer__contains="").exists()
    Label.objects.create(rollout_id=queue.items.first().rollout_id, user=personas.owner, verdict="accept")
    body = client.get(reverse("review-queue", args=[queue.pk])).content.decode()
    assert "<script>window" not in body
    label_page = client.get(reverse("review-label", args=[queue.pk])).content.decode()
    assert "<script>window" not in label_page  # the item travels as escaped JSON
    assert "\\u003Cscript\\u003Ewindow.pwned" in label_page
    assert_text_not_html(client.get(f"/runs/{traces.run.pk}/explore/?q=script").content.decode())


def test_runs_of_two_projects_make_no_queue(personas, traces):
    from django.core.exceptions import ValidationError

    from webapp.review.filters import parse_filter
    from webapp.review.services import queue_create

    with pytest.raises(ValidationError, match="several projects"):
        queue_create(user=personas.owner, runs=[traces.run, traces.outsider_run], flt=parse_filter({}), name="x",
                     tags=[], assignees=[])


def test_viewers_read_the_label_page_but_cannot_label(client, queue, viewer):
    client.force_login(viewer)
    response = client.get(reverse("review-label", args=[queue.pk]))
    assert not response.context["can_label"] and 'id="read-only"' in response.content.decode()


def test_a_groups_repeated_completions_are_queued_once_when_asked(client, personas):
    from webapp.ingest.store import RolloutIn, rollouts_store
    from webapp.runs.models import Run

    run = Run.objects.create(project=personas.project, name="grpo", stage="grpo", status="succeeded")
    same = "<think>3 + 4 = 7</think> 7"
    rollouts_store(run=run, rollouts=[RolloutIn(step=1, prompt="3+4?", completion=same, rewards={"math": 1.0},
                                                sample_index=i) for i in range(6)]
                   + [RolloutIn(step=1, prompt="3+4?", completion="<think>guess</think> 8", rewards={"math": 0.0},
                                sample_index=6),
                      RolloutIn(step=1, prompt="5+5?", completion=same, rewards={"math": 0.0}, sample_index=0)])
    client.force_login(personas.owner)
    data = {"runs": str(run.pk), "filter": "", "limit": "50", "tags": "", "assignees": ["alice"]}
    client.post(reverse("review-queue-new"), {**data, "name": "every sample"})
    client.post(reverse("review-queue-new"), {**data, "name": "each text once", "distinct": "on"})
    counts = dict(ReviewQueue.objects.values_list("name", "item_count"))
    assert counts == {"every sample": 8, "each text once": 3}  # 6 repeats count once; another prompt's copy stays
