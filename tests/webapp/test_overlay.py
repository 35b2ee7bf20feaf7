"""Several runs' curves together: grouped means and spreads, downsampling in SQL, membership."""

from __future__ import annotations

import statistics

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from webapp.ingest import store
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db
DATA = "/runs/overlay/data.json"


def log(run: Run, name: str, values: dict[int, float]) -> None:
    store.metrics_store(run=run, points=[(step, name, value) for step, value in values.items()])


@pytest.fixture
def runs(personas):
    """Two runs at lr 1e-6 (one of them logged from outside), one at 3e-6, one the owner can't see."""
    a = Run.objects.create(project=personas.project, name="lr small a", stage="grpo", config={"optim": {"lr": 1e-6}})
    b = Run.objects.create(project=personas.project, name="lr small b (TRL)", stage="external",
                           config={"optim": {"lr": 1e-6}, "seed": 2})
    c = Run.objects.create(project=personas.project, name="lr big", stage="grpo", config={"optim": {"lr": 3e-6}})
    hidden = Run.objects.create(project=personas.other_project, name="not yours", stage="grpo", config={})
    log(a, "reward", {s: float(s) for s in range(10)})
    log(b, "reward", {s: s + 2.0 for s in range(10)})
    log(c, "reward", {s: 10.0 for s in range(5)})
    log(a, "kl", {s: 0.1 for s in range(10)})
    log(hidden, "reward", {s: 99.0 for s in range(10)})
    return {"a": a, "b": b, "c": c, "hidden": hidden}


def fetch(client, run_ids, **params):
    response = client.get(DATA, {"runs": [str(r) for r in run_ids], **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_groups_by_a_config_value_with_mean_and_spread(client, personas, runs):
    client.force_login(personas.owner)
    body = fetch(client, [runs[k].pk for k in "abc"], metric="reward", group_by="optim.lr")
    chart = body["charts"]["reward"]
    assert chart["x"] == list(range(10))
    small, big = chart["groups"]["1e-06"], chart["groups"]["3e-06"]
    assert small["runs"] == [runs["a"].pk, runs["b"].pk] and big["runs"] == [runs["c"].pk]
    assert small["mean"] == [s + 1.0 for s in range(10)]
    assert small["min"] == [float(s) for s in range(10)] and small["max"] == [s + 2.0 for s in range(10)]
    assert small["std"] == [1.0] * 10 and small["n"] == [2] * 10
    assert big["mean"] == [10.0] * 5 + [None] * 5 and big["n"] == [1] * 5 + [0] * 5
    assert chart["runs"][str(runs["c"].pk)]["mean"] == [10.0] * 5 + [None] * 5
    assert [r["group"] for r in body["runs"]] == ["1e-06", "1e-06", "3e-06"]
    assert body["config_keys"][0] == "optim.lr" and "seed" in body["config_keys"]  # differing keys first


def test_a_key_some_runs_lack_makes_a_not_set_group(client, personas, runs):
    client.force_login(personas.owner)
    groups = fetch(client, [runs[k].pk for k in "abc"], metric="reward", group_by="seed")["charts"]["reward"]["groups"]
    assert groups["2"]["runs"] == [runs["b"].pk]
    assert groups["(not set)"]["runs"] == [runs["a"].pk, runs["c"].pk]


def test_metrics_are_listed_and_picked(client, personas, runs):
    client.force_login(personas.owner)
    body = fetch(client, [runs["a"].pk, runs["c"].pk], metric=["kl", "reward", "missing"])
    assert body["metrics"] == ["kl", "reward"] and body["shown"] == ["kl", "reward"]
    assert body["charts"]["kl"]["runs"][str(runs["c"].pk)]["mean"] == [None] * 10
    assert fetch(client, [runs["a"].pk])["shown"] == ["reward"]  # the default


def test_runs_of_other_projects_are_left_out(client, personas, runs):
    client.force_login(personas.owner)
    body = fetch(client, [runs["a"].pk, runs["hidden"].pk], metric="reward")
    assert [r["id"] for r in body["runs"]] == [runs["a"].pk]
    assert str(runs["hidden"].pk) not in body["charts"]["reward"]["runs"]
    client.force_login(personas.outsider)
    assert fetch(client, [runs["a"].pk], metric="reward")["runs"] == []
    page = client.get(reverse("run-overlay"), {"runs": runs["a"].pk}).content.decode()
    assert "lr small a" not in page and "No runs selected that you can see" in page


def test_the_page_lists_the_chosen_runs_for_every_member(client, personas, runs):
    for user in (personas.owner, personas.teammate):
        client.force_login(user)
        page = client.get(reverse("run-overlay"), {"runs": [runs["a"].pk, runs["b"].pk]}).content.decode()
        assert "lr small a" in page and "lr small b (TRL)" in page and "overlay.js" in page
    client.logout()
    assert client.get(reverse("run-overlay"))["Location"].startswith("/accounts/login/")
    assert client.get(DATA)["Location"].startswith("/accounts/login/")


def test_bad_parameters_are_named(client, personas, runs):
    client.force_login(personas.owner)
    for params, message in [({"runs": "x"}, "runs: run ids are whole numbers"),
                            ({"runs": "1", "points": "5"}, "points: between 10 and 5000"),
                            ({"runs": [str(i) for i in range(60)]}, "runs: at most 50 runs")]:
        response = client.get(DATA, params)
        assert response.status_code == 400 and message in response.json()["errors"][0], params
    assert client.get(reverse("run-overlay"), {"runs": "x"}).status_code == 400


def seed_points(run: Run, n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO runs_metricpoint (run_id, name, step, value, wall_time) "
                       "SELECT %s, 'reward', s, ((s * 7919) %% 1000)::float8, now() FROM generate_series(0, %s - 1) s",
                       [run.pk, n])


def test_two_hundred_thousand_points_come_back_as_buckets_with_exact_extremes(client, personas):
    run = Run.objects.create(project=personas.project, name="long", stage="external")
    seed_points(run, 200_000)
    client.force_login(personas.owner)
    chart = fetch(client, [run.pk], metric="reward", points="100")["charts"]["reward"]
    curve = chart["runs"][str(run.pk)]
    assert chart["x"] == [k * 2000 for k in range(100)]  # 100 buckets of 2,000 steps
    for k in (0, 37, 99):
        values = [float((s * 7919) % 1000) for s in range(k * 2000, (k + 1) * 2000)]
        assert curve["min"][k] == min(values) and curve["max"][k] == max(values)
        assert curve["mean"][k] == pytest.approx(statistics.fmean(values))


def test_the_run_page_curves_are_downsampled_too(client, personas):
    run = Run.objects.create(project=personas.project, name="long", stage="grpo")
    seed_points(run, 5000)
    client.force_login(personas.owner)
    series = client.get(reverse("run-metrics", args=[run.pk])).json()["series"]["reward"]
    assert 1000 < len(series) <= 2000 and series[0][0] == 0


def test_query_count_does_not_grow_with_runs_or_metrics(client, personas, runs):
    client.force_login(personas.owner)
    counts = []
    for keys, metrics in (("a", ["reward"]), ("abc", ["reward", "kl"])):
        with CaptureQueriesContext(connection) as queries:
            fetch(client, [runs[k].pk for k in keys], metric=metrics, group_by="optim.lr")
        counts.append(len(queries))
    # session, user, runs, metric names, then the buckets (savepoint, SET LOCAL jit, query, release)
    assert counts == [8, 8], counts
