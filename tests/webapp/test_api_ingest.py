import json

import pytest

from webapp.runs.models import MetricPoint, Rollout, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(personas):
    return Run.objects.create(project=personas.project, name="ext", stage="external", status="running")


def rollout(step=1, i=0, prompt="What is 2+3?", reward=1.0, **extra):
    body = {"step": step, "prompt": prompt, "completion": f"<think>2 plus 3</think> {i}", "rewards": {"math": reward, "format": 1.0},
            "sample_index": i}
    body.update(extra)
    return body


def test_a_batch_sent_twice_is_stored_once(personas, api_for, run):
    api = api_for(personas.owner)
    batch = {"rollouts": [rollout(i=i) for i in range(4)]}
    first = api.post(f"/api/v1/runs/{run.pk}/rollouts", batch)
    assert first.status_code == 201 and first.json() == {"created": 4}
    second = api.post(f"/api/v1/runs/{run.pk}/rollouts", batch)
    assert second.status_code == 201 and second.json() == {"created": 0}
    assert Rollout.objects.filter(run=run).count() == 4


def test_it_splits_reasoning_and_sums_rewards(personas, api_for, run):
    api = api_for(personas.owner)
    api.post(f"/api/v1/runs/{run.pk}/rollouts", {"rollouts": [rollout(reward=0.5, answer="5", metadata={"adv": 0.3})]})
    stored = Rollout.objects.get(run=run)
    assert stored.reasoning == "2 plus 3"
    assert stored.final_answer == "0"
    assert stored.reference == "5"
    assert stored.reward == pytest.approx(1.5)
    assert stored.rewards == {"math": 0.5, "format": 1.0}
    assert stored.metadata == {"adv": 0.3}


@pytest.mark.parametrize(
    ("bad", "field", "rule"),
    [
        ({"step": "one"}, "rollouts[1].step", "integer"),
        ({"step": -1}, "rollouts[1].step", "greater than or equal to 0"),
        ({"rewards": {"math": "high"}}, "rollouts[1].rewards.math", "number"),
        ({"rewards": [1]}, "rollouts[1].rewards", "object"),
        ({"prompt": None}, "rollouts[1].prompt", "string"),
        ({"completion": "nul \u0000 here"}, "rollouts[1].completion", "NUL"),
        ({"sample_index": 1.5}, "rollouts[1].sample_index", "integer"),
        ({"surprise": 1}, "rollouts[1].surprise", "Extra inputs"),
    ],
)
def test_a_malformed_batch_is_refused_whole(personas, api_for, run, bad, field, rule):
    batch = {"rollouts": [rollout(i=0), {**rollout(i=1), **bad}]}
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", batch)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert field in detail and rule in detail, detail
    assert Rollout.objects.count() == 0


def test_a_missing_field_is_named(personas, api_for, run):
    item = rollout()
    del item["completion"]
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", {"rollouts": [item]})
    assert response.status_code == 422
    assert "rollouts[0].completion: Field required" in response.json()["detail"]


def test_more_than_5000_rollouts_are_refused(personas, api_for, run):
    batch = {"rollouts": [rollout(i=i) for i in range(5001)]}
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", batch)
    assert response.status_code == 422
    assert "rollouts" in response.json()["detail"] and "5000" in response.json()["detail"]
    assert Rollout.objects.count() == 0


def test_exactly_5000_rollouts_are_accepted(personas, api_for, run):
    batch = {"rollouts": [rollout(i=i) for i in range(5000)]}
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", batch)
    assert response.status_code == 201 and response.json() == {"created": 5000}


def test_a_body_that_is_not_utf8_is_refused(personas, api_for, run):
    raw = json.dumps({"rollouts": [rollout()]}).encode().replace(b"What", b"Wh\xff\xfet")
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", raw=raw)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]
    assert Rollout.objects.count() == 0


def test_a_body_that_is_not_json_is_refused(personas, api_for, run):
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", raw=b"{rollouts: nope")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_only_owners_write_and_outsiders_see_nothing(personas, api_for, run):
    batch = {"rollouts": [rollout()]}
    assert api_for(personas.teammate).post(f"/api/v1/runs/{run.pk}/rollouts", batch).status_code == 403
    assert api_for(personas.outsider).post(f"/api/v1/runs/{run.pk}/rollouts", batch).status_code == 404
    assert api_for(personas.outsider).get(f"/api/v1/runs/{run.pk}/rollouts").status_code == 404
    assert Rollout.objects.count() == 0


def test_metrics_are_stored_and_a_resent_point_overwrites(personas, api_for, run):
    api = api_for(personas.owner)
    points = [{"step": s, "name": "reward/mean", "value": s / 10} for s in range(10)]
    assert api.post(f"/api/v1/runs/{run.pk}/metrics", {"points": points}).status_code == 201
    api.post(f"/api/v1/runs/{run.pk}/metrics", {"points": [{"step": 3, "name": "reward/mean", "value": 9.0}]})
    values = dict(MetricPoint.objects.filter(run=run).values_list("step", "value"))
    assert len(values) == 10 and values[3] == 9.0 and values[4] == 0.4


def test_bad_metric_points_name_the_field(personas, api_for, run):
    api = api_for(personas.owner)
    response = api.post(f"/api/v1/runs/{run.pk}/metrics", {"points": [{"step": 1, "name": "kl"}]})
    assert response.status_code == 422 and "points[0].value: Field required" in response.json()["detail"]
    assert MetricPoint.objects.count() == 0


class TestListing:
    @pytest.fixture
    def stored(self, personas, api_for, run):
        api = api_for(personas.owner)
        rows = [rollout(step=s, i=i, reward=(s * 3 + i) % 5 / 4, prompt=f"p{i}") for s in range(6) for i in range(3)]
        rows[4]["completion"] = "<think>find the NEEDLE</think> 7"
        api.post(f"/api/v1/runs/{run.pk}/rollouts", {"rollouts": rows})
        return api

    def test_it_pages_newest_step_first_without_gaps_or_repeats(self, stored, run):
        seen, cursor = [], None
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = stored.get(f"/api/v1/runs/{run.pk}/rollouts", **params).json()
            seen.extend(page["items"])
            cursor = page["next"]
            if cursor is None:
                break
        assert len(seen) == 18 and len({r["id"] for r in seen}) == 18
        steps = [r["step"] for r in seen]
        assert steps == sorted(steps, reverse=True)

    def test_it_filters_by_step_and_reward(self, stored, run):
        items = stored.get(f"/api/v1/runs/{run.pk}/rollouts", step=2).json()["items"]
        assert {r["step"] for r in items} == {2} and len(items) == 3
        items = stored.get(f"/api/v1/runs/{run.pk}/rollouts", min_reward=1.5, max_reward=1.75).json()["items"]
        assert items and all(1.5 <= r["reward"] <= 1.75 for r in items)

    def test_it_searches_text(self, stored, run):
        items = stored.get(f"/api/v1/runs/{run.pk}/rollouts", q="needle").json()["items"]
        assert [r["completion"] for r in items] == ["<think>find the NEEDLE</think> 7"]
        items = stored.get(f"/api/v1/runs/{run.pk}/rollouts", q="100%_off").json()["items"]
        assert items == []


@pytest.mark.parametrize(
    ("points", "field", "rule"),
    [
        ([{"step": 1, "name": "kl", "value": "NaN"}], "points[0].value", "number"),
        ('{"points": [{"step": 1, "name": "kl", "value": NaN}]}', "points[0].value", "finite"),
        ('{"points": [{"step": 1, "name": "kl", "value": Infinity}]}', "points[0].value", "finite"),
        ([{"step": 1, "name": "k\u0000l", "value": 1.0}], "points[0].name", "NUL"),
        ([{"step": 1, "name": "", "value": 1.0}], "points[0].name", "at least 1 character"),
        ([{"step": 2**63, "name": "kl", "value": 1.0}], "points[0].step", "less than or equal to"),
    ],
)
def test_bad_metric_values_are_refused(personas, api_for, run, points, field, rule):
    api = api_for(personas.owner)
    raw = points.encode() if isinstance(points, str) else None
    response = api.post(f"/api/v1/runs/{run.pk}/metrics", {"points": points}, raw=raw)
    assert response.status_code == 422, response.content
    assert field in response.json()["detail"] and rule in response.json()["detail"]
    assert MetricPoint.objects.count() == 0


def test_a_non_finite_reward_is_refused(personas, api_for, run):
    raw = (b'{"rollouts": [{"step": 1, "prompt": "p", "completion": "c", "rewards": {"math": NaN}}]}')
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", raw=raw)
    assert response.status_code == 422 and "rollouts[0].rewards.math" in response.json()["detail"]
    response = api_for(personas.owner).post(f"/api/v1/runs/{run.pk}/rollouts", {"rollouts": [
        {"step": 1, "prompt": "p", "completion": "c", "rewards": {"ma\u0000th": 1.0}}]})
    assert response.status_code == 422 and "NUL" in response.json()["detail"]
    assert Rollout.objects.count() == 0
