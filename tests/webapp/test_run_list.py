"""The runs list: filters that filter, columns that sort, pages, and a fixed query count."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(personas):
    beta = personas.other_project
    from webapp.projects.models import Role
    from webapp.projects.services import member_add

    member_add(project=beta, user=personas.owner, role=Role.VIEWER)  # alice sees both projects
    spec = [  # name, project, stage, status, step, launched by, final reward
        ("grpo-lr-1e-6", personas.project, "grpo", "succeeded", 300, personas.owner, 0.41),
        ("grpo-lr-3e-6", personas.project, "grpo", "running", 120, personas.teammate, None),
        ("sft-warmup", personas.project, "sft", "failed", 10, personas.owner, None),
        ("trl external", beta, "external", "succeeded", 800, personas.outsider, 0.73),
        ("eval gsm8k", beta, "eval", "queued", 0, personas.outsider, None),
    ]
    made = {}
    for name, project, stage, status, step, user, reward in spec:
        made[name] = Run.objects.create(project=project, name=name, stage=stage, status=status, current_step=step,
                                        launched_by=user, summary={"reward/mean": reward} if reward else {})
    return made


def names(client, **params) -> list[str]:
    response = client.get(reverse("run-list"), params)
    assert response.status_code == 200
    body = response.content.decode()
    return re.findall(r'<tr data-run="\d+">.*?<a href="/runs/\d+/">([^<]+)</a>', body, re.S)


def test_each_filter_narrows_the_list(client, personas, runs):
    client.force_login(personas.owner)
    assert len(names(client)) == 5
    assert set(names(client, project="beta")) == {"trl external", "eval gsm8k"}
    assert names(client, stage="sft") == ["sft-warmup"]
    assert names(client, status="running") == ["grpo-lr-3e-6"]
    assert names(client, launched_by="bob") == ["grpo-lr-3e-6"]
    assert set(names(client, q="GRPO-LR")) == {"grpo-lr-1e-6", "grpo-lr-3e-6"}
    assert names(client, q="grpo", status="succeeded", project="alpha") == ["grpo-lr-1e-6"]


def test_columns_sort_both_ways(client, personas, runs):
    client.force_login(personas.owner)
    by_name = sorted(runs)
    assert names(client, sort="name") == by_name
    assert names(client, sort="-name") == by_name[::-1]
    assert names(client, sort="-steps") == ["trl external", "grpo-lr-1e-6", "grpo-lr-3e-6", "sft-warmup", "eval gsm8k"]
    assert names(client, sort="-reward")[:2] == ["trl external", "grpo-lr-1e-6"]  # runs without one come last
    assert names(client, sort="reward")[:2] == ["grpo-lr-1e-6", "trl external"]
    assert names(client, sort="created") == list(runs)
    assert names(client) == list(runs)[::-1]  # newest first by default
    assert names(client, sort="status")[:3] == ["grpo-lr-3e-6", "eval gsm8k", "sft-warmup"]  # running, queued, failed


def test_a_header_link_keeps_the_filters_and_flips_the_order(client, personas, runs):
    client.force_login(personas.owner)
    body = client.get(reverse("run-list"), {"stage": "grpo", "sort": "name"}).content.decode()
    link = re.search(r'data-sort="name" href="([^"]+)"', body).group(1).replace("&amp;", "&")
    assert "stage=grpo" in link and "sort=-name" in link


def test_bad_values_are_named_and_ignored(client, personas, runs):
    client.force_login(personas.owner)
    body = client.get(reverse("run-list"), {"stage": "bogus", "sort": "colour", "page": "x"}).content.decode()
    assert "stage: &#x27;bogus&#x27; is not one of" in body
    assert "sort: &#x27;colour&#x27; is not a column" in body and "page: &#x27;x&#x27; is not a page number" in body
    assert len(names(client, stage="bogus")) == 5


def test_outsiders_see_only_their_projects(client, personas, runs):
    client.force_login(personas.outsider)
    assert set(names(client)) == {"trl external", "eval gsm8k"}
    assert names(client, project="alpha") == []
    client.force_login(personas.teammate)
    assert "trl external" not in names(client)


def test_pages_of_fifty(client, personas):
    Run.objects.bulk_create([Run(project=personas.project, name=f"run {i:03d}", stage="grpo") for i in range(120)])
    client.force_login(personas.owner)
    first, third = names(client, sort="name"), names(client, sort="name", page="3")
    assert first[0] == "run 000" and len(first) == 50 and third == [f"run {i:03d}" for i in range(100, 120)]
    body = client.get(reverse("run-list"), {"sort": "name", "page": "2"}).content.decode()
    assert 'id="next-page"' in body and 'id="prev-page"' in body
    assert 'id="next-page"' not in client.get(reverse("run-list"), {"page": "3"}).content.decode()


def test_query_count_does_not_grow_with_runs(client, personas, runs):
    client.force_login(personas.owner)
    client.get(reverse("run-list"))
    counts = []
    for extra in (0, 40):
        for i in range(extra):
            run = Run.objects.create(project=personas.project, name=f"more {i}", stage="grpo", launched_by=personas.owner)
            run.checkpoints.create(step=10, path=f"/ckpt/{i}")
        with CaptureQueriesContext(connection) as queries:
            client.get(reverse("run-list"), {"sort": "-reward"})
        counts.append(len(queries))
    # session, user, runs page (project, launcher, latest checkpoint, reward inline), the page's reward
    # sparklines (one query for every run), projects, launchers
    assert counts == [6, 6], counts


def test_runs_are_found_by_a_setting_and_draw_their_reward(client, personas):
    from django.utils import timezone

    from webapp.runs.models import MetricPoint, Run

    low = Run.objects.create(project=personas.project, name="low lr", stage="grpo",
                             config={"learning_rate": 1e-6, "rewards": {"math": 1.0}, "task": None})
    high = Run.objects.create(project=personas.project, name="high lr", stage="grpo",
                              config={"learning_rate": 2e-4, "rewards": {"format": 0.5}, "task": "arithmetic"})
    now = timezone.now()
    MetricPoint.objects.bulk_create([MetricPoint(run=low, name="reward/mean", step=s, value=s / 100, wall_time=now)
                                     for s in range(1, 201)])
    client.force_login(personas.owner)

    def listed(q):
        body = client.get("/runs/", {"q": q}).content.decode()
        return {name for name in ("low lr", "high lr") if f">{name}</a>" in body}

    assert listed("learning_rate=1e-06") == {"low lr"} and listed("learning_rate=0.0002") == {"high lr"}
    assert listed("rewards.math=1") == {"low lr"} and listed("task=null") == {"low lr"}
    assert listed("task=arithmetic lr") == {"high lr"}  # words combine
    body = client.get("/runs/").content.decode()
    row = body.split(f'data-run="{low.pk}"')[1].split("</tr>")[0]
    points = row.split('<polyline points="')[1].split('"')[0].split()
    assert 30 <= len(points) <= 45  # about 40 of the 200 points
    first, last = (tuple(map(float, p.split(","))) for p in (points[0], points[-1]))
    assert first[0] == 0.0 and last[0] == 90.0 and last[1] < first[1]  # rising reward: the line climbs
    assert "<polyline" not in body.split(f'data-run="{high.pk}"')[1].split("</tr>")[0]  # nothing logged
