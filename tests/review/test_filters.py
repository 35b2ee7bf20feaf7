"""The explorer filter: parsed with sentences that name the field, applied in SQL."""

import pytest
from django.http import QueryDict

from webapp.review.filters import ExplorerFilter, FilterError, apply_filter, parse_filter
from webapp.review.models import Label
from webapp.runs.models import Rollout

pytestmark = pytest.mark.django_db


def matching(traces, **params) -> list[Rollout]:
    flt = parse_filter(QueryDict(mutable=True) | {k: str(v) for k, v in params.items()})
    return list(apply_filter(Rollout.objects.filter(run=traces.run), flt))


def test_it_round_trips_through_a_query_string():
    flt = parse_filter({"step_min": "3", "reward_max": "1.5", "rmin.math": "1", "correct_by": "math",
                        "correct": "yes", "q": "x", "sort": "best", "label": "unlabelled"})
    assert parse_filter(flt.to_params()) == flt
    assert parse_filter({}) == ExplorerFilter()


@pytest.mark.parametrize("params, field", [
    ({"step_min": "three"}, "step_min"), ({"reward_max": "nan"}, "reward_max"), ({"sort": "random"}, "sort"),
    ({"finish": "eos"}, "finish"), ({"correct": "yes"}, "correct_by"), ({"rmin.math": "high"}, "rmin.math"),
    ({"label": "maybe"}, "label"),
])
def test_it_names_the_bad_field(params, field):
    with pytest.raises(FilterError, match=f"^{field}:"):
        parse_filter(params)


def test_it_filters_steps_rewards_and_length(traces):
    rows = matching(traces, step_min=2, step_max=3)
    assert rows and {r.step for r in rows} == {2, 3}
    assert all(r.reward >= 2 for r in matching(traces, reward_min=2))
    assert all(r.token_count >= 30 for r in matching(traces, tokens_min=30))
    assert all(r.token_count <= 15 for r in matching(traces, tokens_max=15))


def test_it_filters_on_one_reward_component(traces):
    rows = matching(traces, **{"rmax.format": 0})
    assert rows and all(r.rewards["format"] == 0 for r in rows)


def test_correct_means_the_chosen_reward_is_one(traces):
    right = matching(traces, correct_by="math", correct="yes")
    wrong = matching(traces, correct_by="math", correct="no")
    assert right and wrong and len(right) + len(wrong) == Rollout.objects.filter(run=traces.run).count()
    assert all(r.rewards["math"] == 1 for r in right) and all(r.rewards["math"] != 1 for r in wrong)
    # "correct but long, after step 2"
    rows = matching(traces, correct_by="math", correct="yes", tokens_min=25, step_min=3)
    assert rows and all(r.rewards["math"] == 1 and r.token_count >= 25 and r.step >= 3 for r in rows)


def test_it_filters_finish_reason_and_text(traces):
    assert {r.finish_reason for r in matching(traces, finish="length")} == {"length"}
    rows = matching(traces, q="THINKING 4/1/")
    assert {r.step for r in rows} == {4} and len(rows) == 4
    assert matching(traces, q="100%_") == []  # LIKE wildcards are literal
    assert len(matching(traces, q="<script>")) > 0


def test_it_filters_labels_and_tags(traces, personas):
    first, second = Rollout.objects.filter(run=traces.run).order_by("id")[:2]
    Label.objects.create(rollout=first, user=personas.owner, verdict="accept", tags=["readable"])
    Label.objects.create(rollout=second, user=personas.owner, verdict="reject", tags=["repetitive"])
    assert [r.pk for r in matching(traces, label="accept")] == [first.pk]
    assert {r.pk for r in matching(traces, label="labelled")} == {first.pk, second.pk}
    assert [r.pk for r in matching(traces, tag="repetitive")] == [second.pk]
    assert first.pk not in {r.pk for r in matching(traces, label="unlabelled")}
