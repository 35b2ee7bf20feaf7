"""One prompt's samples at every step of a run (trl#2045)."""

import pytest

from tests.review.conftest import GROUP, STEPS, assert_text_not_html
from webapp.runs.models import Rollout

pytestmark = pytest.mark.django_db


def hostile_prompt(traces) -> int:
    return Rollout.objects.filter(run=traces.run, prompt__contains="<script>").values_list("prompt_hash", flat=True)[0]


def test_it_shows_every_step_of_one_prompt(client, personas, traces, django_assert_max_num_queries):
    h = hostile_prompt(traces)
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(7):
        response = client.get(f"/runs/{traces.run.pk}/prompts/{h}/")
    assert response.status_code == 200
    rows = response.context["rows"]
    assert len(rows) == STEPS * GROUP and {r.prompt_hash for r in rows} == {h}
    assert [(r.step, r.sample_index) for r in rows] == sorted((r.step, r.sample_index) for r in rows)
    assert [s["step"] for s in response.context["steps"]] == list(range(1, STEPS + 1))
    assert_text_not_html(response.content.decode())


def test_it_pages_by_keyset(client, personas, traces):
    from webapp.review.selectors import prompt_samples

    h = hostile_prompt(traces)
    first, cursor = prompt_samples(traces.run, h, cursor=None, limit=10)
    second, _ = prompt_samples(traces.run, h, cursor=cursor, limit=10)
    assert len(first) == 10 and (second[0].step, second[0].sample_index) > (first[-1].step, first[-1].sample_index)


def test_outsiders_and_unknown_prompts_get_404(client, personas, traces):
    h = hostile_prompt(traces)
    client.force_login(personas.outsider)
    assert client.get(f"/runs/{traces.run.pk}/prompts/{h}/").status_code == 404
    client.force_login(personas.owner)
    assert client.get(f"/runs/{traces.run.pk}/prompts/12345/").status_code == 404
    assert client.get(f"/runs/{traces.other_run.pk}/prompts/{h}/").status_code == 404  # never sampled there
