"""One sample token by token: the stored log-probs shown as a heatmap, model text as text."""

import math

import pytest
from django.urls import reverse

from webapp.runs.models import Rollout, Run

pytestmark = pytest.mark.django_db

PIECES = ["<think>", " 3", " +", " <script>window.pwned=1</script>", " 4", "</think>", " 7"]
LOGPROBS = [-0.01, -0.2, -0.05, -4.0, -0.3, -0.02, -1.5]


@pytest.fixture
def sample(personas):
    run = Run.objects.create(project=personas.project, name="r", stage="grpo", status="succeeded")
    viewed = Rollout.objects.create(run=run, step=3, prompt_hash=9, prompt="3 + 4?", completion="".join(PIECES),
                                    token_count=len(PIECES), metadata={"token_view": {"pieces": PIECES,
                                                                                      "logprobs": LOGPROBS}})
    plain = Rollout.objects.create(run=run, step=3, sample_index=1, prompt_hash=9, prompt="3 + 4?", completion="7")
    return run, viewed, plain


def test_the_heatmap_shows_each_token_with_its_stored_log_prob(client, personas, sample,
                                                                django_assert_max_num_queries):
    run, viewed, plain = sample
    client.force_login(personas.teammate)
    with django_assert_max_num_queries(5):  # session, user, run, its project role check, the rollout
        page = client.get(reverse("rollout-tokens", args=[run.pk, viewed.pk])).content.decode()
    spans = page.split('id="token-heatmap">')[1].split("</div>")[0]
    assert spans.count('class="tok"') == len(PIECES)
    for lp in LOGPROBS:
        assert f'data-logprob="{lp}"' in spans
    assert f"rgba(220,38,38,{round(1 - math.exp(-4.0), 2)})" in spans  # the unsure token, the deepest red
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "<script>window.pwned" not in page
    unsure = page.split('id="unsure-tokens"')[1]
    assert unsure.index("-4.000") < unsure.index("-1.500")  # least likely first
    assert 'id="mean-logprob">' + f"{sum(LOGPROBS) / len(LOGPROBS):.3f}" in page
    explorer = client.get(reverse("explore-run", args=[run.pk])).content.decode()
    assert reverse("rollout-tokens", args=[run.pk, viewed.pk]) in explorer
    assert reverse("rollout-tokens", args=[run.pk, plain.pk]) not in explorer  # only where tokens were stored
    assert 'id="no-token-view"' in client.get(reverse("rollout-tokens", args=[run.pk, plain.pk])).content.decode()


def test_outsiders_and_other_runs_see_nothing(client, personas, sample):
    run, viewed, _ = sample
    other = Run.objects.create(project=personas.project, name="other", stage="grpo")
    client.force_login(personas.owner)
    assert client.get(reverse("rollout-tokens", args=[other.pk, viewed.pk])).status_code == 404
    client.force_login(personas.outsider)
    assert client.get(reverse("rollout-tokens", args=[run.pk, viewed.pk])).status_code == 404
