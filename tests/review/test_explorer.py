"""The trace explorer: who sees it, keyset pages, GRPO groups and advantages, text as text."""

import re
import statistics

import pytest

from tests.review.conftest import assert_text_not_html
from webapp.review.filters import SORTS, parse_filter
from webapp.review.selectors import explorer_page, group_advantage
from webapp.runs.models import Rollout

pytestmark = pytest.mark.django_db


def url(traces, query=""):
    return f"/runs/{traces.run.pk}/explore/{query}"


def test_anonymous_visitors_log_in_first(client, traces):
    assert client.get(url(traces))["Location"].startswith("/accounts/login/")


def test_members_see_it_and_outsiders_get_404(client, personas, traces, viewer):
    for user in (personas.owner, personas.teammate, viewer):
        client.force_login(user)
        assert client.get(url(traces)).status_code == 200, user
    client.force_login(personas.outsider)
    assert client.get(url(traces)).status_code == 404
    assert client.get(f"/explore/?runs={traces.run.pk}").status_code == 404
    assert client.get(f"/explore/?runs={traces.outsider_run.pk},{traces.run.pk}").status_code == 404


def test_only_labellers_see_the_queue_form_and_owners_the_dataset_form(client, personas, traces, viewer):
    for user, queue, dataset in ((personas.owner, True, True), (personas.teammate, True, False), (viewer, False, False)):
        client.force_login(user)
        body = client.get(url(traces)).content.decode()
        assert ('id="queue-form"' in body) is queue and ('id="filter-dataset-form"' in body) is dataset, user


def test_model_text_is_shown_as_text(client, personas, traces):
    client.force_login(personas.teammate)
    assert_text_not_html(client.get(url(traces)).content.decode())
    assert_text_not_html(client.get(url(traces, "?sort=best")).content.decode())


def test_query_count_is_pinned(client, personas, traces, django_assert_max_num_queries):
    client.force_login(personas.owner)
    with django_assert_max_num_queries(9):  # session, user, run, role, members, reward names, page, groups, labels
        assert client.get(url(traces, "?correct_by=math&correct=yes&label=unlabelled")).status_code == 200
    with django_assert_max_num_queries(12):  # a text search also sets its time limit in a savepoint
        assert client.get(url(traces, "?q=think&sort=longest")).status_code == 200
    with django_assert_max_num_queries(9):
        assert client.get(f"/explore/?runs={traces.run.pk},{traces.other_run.pk}&sort=best").status_code == 200


def walk(runs, sort, limit=7, **params):
    flt = parse_filter({"sort": sort, **params})
    seen, cursor = [], None
    while True:
        page = explorer_page(runs, flt, cursor=cursor, limit=limit)
        seen.extend(page.rows)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", list(SORTS))
def test_keyset_pages_visit_every_row_once_in_order(traces, sort):
    for runs in ([traces.run], [traces.run, traces.other_run]):
        rows = walk(runs, sort)
        expected = Rollout.objects.filter(run__in=runs).count()
        assert len(rows) == expected and len({r.pk for r in rows}) == expected, (sort, len(runs))
        if sort == "best":
            assert [r.reward for r in rows] == sorted((r.reward for r in rows), reverse=True)
        if sort == "longest":
            assert [r.token_count for r in rows] == sorted((r.token_count for r in rows), reverse=True)
        if sort == "newest":
            assert [r.step for r in rows] == sorted((r.step for r in rows), reverse=True)


def test_filtered_pages_walk_too(traces):
    rows = walk([traces.run], "newest", limit=5, correct_by="math", correct="yes")
    assert len(rows) == Rollout.objects.filter(run=traces.run, rewards__math=1.0).count()


def test_a_groups_samples_sit_together_with_their_advantages(traces):
    page = explorer_page([traces.run], parse_filter({}), limit=12)
    assert page.grouped and len(page.groups) == 3
    for group in page.groups:
        assert len(group.rows) == 4 and len({(r.step, r.prompt_hash) for r in group.rows}) == 1
        rewards = [r.reward for r in group.rows]
        mean, std = statistics.fmean(rewards), statistics.stdev(rewards)
        for r in group.rows:
            assert r.advantage == pytest.approx((r.reward - mean) / (std + 1e-4))


def test_advantages_use_the_whole_group_even_when_filtered(traces):
    page = explorer_page([traces.run], parse_filter({"correct_by": "math", "correct": "yes"}), limit=50)
    for r in page.rows:
        group = list(Rollout.objects.filter(run=traces.run, step=r.step, prompt_hash=r.prompt_hash)
                     .values_list("reward", flat=True))
        assert r.group_size == 4 and r.advantage == pytest.approx(group_advantage(r.reward, group))


def test_advantage_matches_the_engine(traces):
    torch = pytest.importorskip("torch")
    from engine.grpo import group_advantages

    rewards = [0.0, 1.0, 2.0, 1.0]
    expected = group_advantages(torch.tensor(rewards), 4).tolist()
    assert [group_advantage(r, rewards) for r in rewards] == pytest.approx(expected, abs=1e-5)


def test_next_link_and_bad_input(client, personas, traces):
    client.force_login(personas.owner)
    body = client.get(url(traces, "?sort=worst")).content.decode()
    nxt = re.search(r'id="next-page" href="\?([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "sort=worst" in nxt and client.get(url(traces, f"?{nxt}")).status_code == 200
    response = client.get(url(traces, "?step_min=abc"))
    assert response.status_code == 400 and "step_min: must be a whole number" in response.content.decode()
    response = client.get(url(traces, "?cursor=garbage"))
    assert response.status_code == 400 and "cursor:" in response.content.decode()


def test_multi_run_view_sets_the_same_prompt_side_by_side(client, personas, traces):
    client.force_login(personas.owner)
    body = client.get(f"/explore/?runs={traces.run.pk},{traces.other_run.pk}&step_max=2").content.decode()
    assert f"run #{traces.run.pk}" in body and f"run #{traces.other_run.pk}" in body
    page = explorer_page([traces.run, traces.other_run], parse_filter({"step_max": "2"}), limit=24)
    shared = [g for g in page.groups if {r.run_id for r in g.rows} == {traces.run.pk, traces.other_run.pk}]
    assert shared and all(len(g.rows) == 8 for g in shared)  # both runs' 4 samples of one prompt at one step


def test_correct_means_the_runs_accuracy_reward_not_the_first_reward_name(client, personas):
    from webapp.ingest.store import RolloutIn, rollouts_store
    from webapp.runs.models import Run

    run = Run.objects.create(project=personas.project, name="grpo", stage="grpo", status="succeeded",
                             config={"rewards": {"format": 0.5, "task": 1.0}})
    rollouts_store(run=run, rollouts=[
        RolloutIn(step=1, prompt="2+2?", completion="<think>x</think> 5", rewards={"format": 1.0, "task": 0.0}),
        RolloutIn(step=1, prompt="3+3?", completion="<think>y</think> 6", rewards={"format": 1.0, "task": 1.0}),
    ])
    client.force_login(personas.owner)
    page = client.get(f"/runs/{run.pk}/explore/").content.decode()
    assert '<option value="task" selected>' in page  # accuracy_reward defaults to task, as in the stage
    wrong_listed = client.get(f"/runs/{run.pk}/explore/?correct_by=task&correct=yes").content.decode()
    assert "3+3?" in wrong_listed and "2+2?" not in wrong_listed


def test_the_samples_behind_a_behaviour_curve_are_one_filter_away(client, personas):
    from webapp.ingest.store import RolloutIn, rollouts_store
    from webapp.runs.models import Run

    run = Run.objects.create(project=personas.project, name="grpo", stage="grpo", status="succeeded")
    rollouts_store(run=run, rollouts=[
        RolloutIn(step=1, prompt="p1", completion="<think>Wait, let me check.</think> 5", rewards={"task": 1.0},
                  metadata={"behaviours": ["self_verification"]}),
        RolloutIn(step=1, prompt="p2", completion="<think>plain</think> 6", rewards={"task": 1.0},
                  metadata={"behaviours": []}),
    ])
    client.force_login(personas.teammate)
    page = client.get(f"/runs/{run.pk}/explore/?behaviour=self_verification").content.decode()
    assert "p1" in page and "p2" not in page and '<option value="self_verification" selected>' in page
    refused = client.get(f"/runs/{run.pk}/explore/?behaviour=Tele+pathy").content.decode()
    assert "behaviour: one of self_verification" in refused and "or a run&#x27;s own detector name" in refused
    own = client.get(f"/runs/{run.pk}/explore/?behaviour=telepathy").content.decode()  # a detector name: no match
    assert "p1" not in own and "p2" not in own


def test_the_total_of_a_filter_is_counted_for_whoever_may_see_it(client, personas, traces, settings):
    from webapp.review import selectors

    client.force_login(personas.teammate)
    everything = Rollout.objects.filter(run=traces.run).count()
    long = Rollout.objects.filter(run=traces.run, token_count__gte=20).count()
    base = f"/explore/count.json?runs={traces.run.pk}"
    assert client.get(base).json() == {"count": everything, "cap": selectors.COUNT_CAP}
    assert client.get(base + "&tokens_min=20").json()["count"] == long < everything
    page = client.get(url(traces)).content.decode()
    assert f'data-url="/explore/count.json?runs={traces.run.pk}&amp;' in page
    assert client.get(base + "&reward_min=x").status_code == 400
    client.force_login(personas.outsider)
    assert client.get(base).status_code == 404
