"""Creating comparisons (mistakes named by field), the blind pairs a person is handed, the
verdicts they record, and the figures computed from the stored samples."""

import random
from collections import Counter
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from tests.compare.conftest import CORRECT, PROMPTS, K, column_runs, make_checkpoints
from tests.compare.test_stats import brute_force_pass_at_k
from webapp.compare import selectors
from webapp.compare.models import Comparison, ComparisonSample, Judgment, PairTicket
from webapp.compare.services import (
    SamplingSpec,
    comparison_cancel,
    comparison_create,
    judgment_record,
    next_pair,
)
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("change, message", [
    ({"k": 0}, "k: must be between 1 and 16"),
    ({"num_prompts": 501}, "num_prompts: must be between 1 and 500"),
    ({"max_new_tokens": 0}, "max_new_tokens: must be between 1 and 4096"),
    ({"temperature": 0.0}, "temperature: Greedy decoding (temperature 0) makes all k samples identical"),
    ({"temperature": 2.5}, "temperature: must be between 0 (greedy) and 2"),
    ({"top_p": 0.0}, "top_p: top_p must be in (0, 1]"),
    ({"task": "chess"}, "prompts: the built-in tasks are arithmetic, countdown, humaneval, python"),
    ({"task": None}, "prompts: choose a built-in task or a dataset"),
    ({"split": "dev"}, "split: split must be train or test"),
    ({"rewards": ("format", "vibes")}, "rewards: unknown: vibes"),
    ({"accuracy_reward": "vibes"}, "accuracy_reward: must be task or one of"),
])
def test_mistakes_are_named_and_nothing_is_created(personas, change, message):
    checkpoints = make_checkpoints(personas.project, 2)
    spec = SamplingSpec(**change)
    with pytest.raises(ValidationError) as err:
        comparison_create(user=personas.owner, checkpoint_ids=[c.pk for c in checkpoints], spec=spec)
    field, _, text = message.partition(": ")
    assert any(text in m for m in err.value.message_dict[field]), err.value.message_dict
    assert not Comparison.objects.exists()


def test_checkpoints_must_be_two_to_eight_visible_ones_of_one_project(personas):
    mine = make_checkpoints(personas.project, 2)
    theirs = make_checkpoints(personas.other_project, 1, run_name="beta-run")
    cases = [([mine[0].pk], "choose 2 to 8 different checkpoints"),
             ([mine[0].pk, mine[0].pk], "choose 2 to 8 different checkpoints"),
             ([mine[0].pk, theirs[0].pk], f"not a checkpoint you can see: {theirs[0].pk}")]
    for ids, message in cases:
        with pytest.raises(ValidationError, match=message):
            comparison_create(user=personas.owner, checkpoint_ids=ids, spec=SamplingSpec())
    with pytest.raises(PermissionDenied, match="only project owners"):
        comparison_create(user=personas.teammate, checkpoint_ids=[c.pk for c in mine], spec=SamplingSpec())
    assert not Comparison.objects.exists()


def test_a_comparison_is_queued_after_commit_in_column_order(personas, django_capture_on_commit_callbacks):
    checkpoints = make_checkpoints(personas.project, 3)
    ids = [checkpoints[2].pk, checkpoints[0].pk]
    with django_capture_on_commit_callbacks() as callbacks:
        comparison = comparison_create(user=personas.owner, checkpoint_ids=ids, spec=SamplingSpec(num_prompts=5))
    assert len(callbacks) == 2  # each column's eval run is sent only once the rows are committed
    assert [c.pk for c in selectors.columns(comparison)] == ids
    assert comparison.name == "alpha-grpo @ 30 vs alpha-grpo @ 10"
    job = comparison.job
    assert job.total == 10 and job.status == "queued" and comparison.rewards == {"format": 1.0}
    runs = column_runs(comparison)
    assert [(r.stage, r.config["model"], r.config["num_prompts"]) for r in runs] == [
        ("eval", f"checkpoint:{i}", 5) for i in ids]


def test_cancel_ends_a_queued_comparison_and_only_owners_may(personas, compared):
    comparison = compared.comparison
    Run.objects.filter(comparison_entry__comparison=comparison).update(status="queued")
    with pytest.raises(PermissionDenied):
        comparison_cancel(user=personas.teammate, comparison=comparison)
    comparison_cancel(user=personas.owner, comparison=comparison)
    assert selectors.with_jobs([comparison])[0].job.status == "cancelled"


def test_figures_are_means_over_prompts_with_unbiased_pass_at_k(compared):
    comparison = compared.comparison
    cols = selectors.columns(comparison)
    figs = selectors.figures(comparison, cols, selectors.prompt_results(comparison))
    for fig, correct in zip(figs, CORRECT, strict=True):
        assert fig.prompts == PROMPTS
        assert fig.pass1 == pytest.approx(sum(c / K for c in correct) / PROMPTS)
        assert fig.passk == pytest.approx(sum(brute_force_pass_at_k(K, c, K) for c in correct) / PROMPTS)
        assert fig.cons == pytest.approx(sum(c > K / 2 for c in correct) / PROMPTS)
    # Per prompt against the first column: [1,4,0] vs [3,4,0] and vs [0,2,2].
    assert (figs[1].wins, figs[1].losses, figs[1].ties) == (1, 0, 2)
    assert (figs[2].wins, figs[2].losses, figs[2].ties) == (1, 2, 0)


def test_pairs_cover_every_prompt_and_checkpoint_pair_once_in_random_order(personas, compared):
    comparison, rng = compared.comparison, random.Random(7)
    seen, sides = set(), Counter()
    while (pair := next_pair(user=personas.teammate, comparison=comparison, rng=rng)) is not None:
        assert pair.left.prompt_index == pair.right.prompt_index == pair.prompt.index
        assert pair.left.checkpoint_id != pair.right.checkpoint_id
        key = (pair.prompt.index, frozenset((pair.left.checkpoint_id, pair.right.checkpoint_id)))
        assert key not in seen  # a judged pair never comes back
        seen.add(key)
        sides[pair.left.checkpoint_id < pair.right.checkpoint_id] += 1
        judgment_record(user=personas.teammate, comparison=comparison, token=pair.token, winner="left")
    assert len(seen) == PROMPTS * 3  # 3 prompts x C(3, 2) pairs
    assert sides[True] and sides[False]  # both orders are shown
    # Another person still has every pair to judge.
    assert next_pair(user=personas.owner, comparison=comparison).remaining == PROMPTS * 3


def test_the_pair_on_screen_is_skipped_when_prefetching(personas, compared):
    comparison = compared.comparison
    shown = next_pair(user=personas.owner, comparison=comparison, rng=random.Random(1))
    for seed in range(20):
        other = next_pair(user=personas.owner, comparison=comparison, skip=shown.token, rng=random.Random(seed))
        assert {other.left.pk, other.right.pk} != {shown.left.pk, shown.right.pk}
        assert other.remaining == PROMPTS * 3 - 1


def test_verdicts_are_checked(personas, compared, viewer):
    comparison = compared.comparison
    pair = next_pair(user=personas.owner, comparison=comparison)
    with pytest.raises(PermissionDenied, match="only owners and annotators judge"):
        judgment_record(user=viewer, comparison=comparison, token=pair.token, winner="left")
    with pytest.raises(ValidationError, match="winner"):
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner="both")
    with pytest.raises(ValidationError, match="not a pair this page was given"):
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token + "x", winner="left")
    judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner="tie")
    with pytest.raises(ValidationError, match="judged these two checkpoints on this prompt already"):
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner="left")
    judgment = Judgment.objects.get()
    assert judgment.winner == "tie" and judgment.left_checkpoint_id == pair.left.checkpoint_id


def test_a_pair_of_another_comparison_is_refused(personas, compared):
    from tests.compare.conftest import make_comparison

    other = make_comparison(personas.owner, compared.checkpoints[:2])
    pair = next_pair(user=personas.owner, comparison=other)
    with pytest.raises(ValidationError, match="not a pair of this comparison"):
        judgment_record(user=personas.owner, comparison=compared.comparison, token=pair.token, winner="left")


def test_ratings_follow_the_verdicts(personas, compared):
    """Checkpoint 0 always preferred to 1 and 2, which tie: 0 is on top with an interval
    that holds its rating; pair win rates carry a Wilson interval."""
    comparison, (a, b, _) = compared.comparison, compared.checkpoints
    while (pair := next_pair(user=personas.owner, comparison=comparison)) is not None:
        best = {pair.left.checkpoint_id, pair.right.checkpoint_id} & {a.pk}
        winner = "tie" if not best else "left" if pair.left.checkpoint_id == a.pk else "right"
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner=winner)
    ratings = selectors.comparison_ratings(comparison)
    assert [r.checkpoint.pk for r in ratings][0] == a.pk
    assert ratings[1].elo == pytest.approx(ratings[2].elo)
    assert all(r.low <= r.elo <= r.high and r.games == 2 * PROMPTS for r in ratings)
    rates = selectors.pair_rates(comparison, selectors.columns(comparison))
    first = rates[0]
    assert (first.a.pk, first.b.pk, first.wins, first.losses, first.ties) == (a.pk, b.pk, 3, 0, 0)
    assert first.rate == 1.0 and first.low == pytest.approx(0.4385, abs=1e-4) and first.high == 1.0
    assert rates[2].ties == 3 and rates[2].rate == 0.5
    assert selectors.project_ratings(personas.project)[0].checkpoint.pk == a.pk


def test_samples_are_stored_once_when_a_batch_is_reported_twice(compared):
    from tests.compare.conftest import records
    from webapp.compare.services import comparison_samples_store

    before = ComparisonSample.objects.count()
    comparison_samples_store(run=column_runs(compared.comparison)[0], records=records(0, CORRECT[0]))
    assert ComparisonSample.objects.count() == before == 3 * PROMPTS * K


def test_a_running_comparison_stops_after_its_batch_when_cancelled(personas, compared):
    from workers.sink import DbSink, stage_sink

    comparison = compared.comparison
    runs = column_runs(comparison)
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(status="running", heartbeat_at=timezone.now())  # held
    assert not stage_sink(DbSink(run=runs[0])).should_stop()
    comparison_cancel(user=personas.owner, comparison=comparison)
    # engine.evaluate checks between batches and ends "cancelled"
    assert all(stage_sink(DbSink(run=run)).should_stop() for run in runs)


def test_a_missing_checkpoint_fails_the_comparison_with_the_reason(personas):
    from workers.execution import execute_run

    checkpoints = make_checkpoints(personas.project, 2)
    comparison = comparison_create(user=personas.owner, checkpoint_ids=[c.pk for c in checkpoints],
                                   spec=SamplingSpec(num_prompts=2, k=2))
    runs = column_runs(comparison)
    assert execute_run(run_id=runs[0].pk, task_id="someone-else", worker="w") == "not-claimed"
    assert [execute_run(run_id=r.pk, task_id=r.celery_task_id, worker="w") for r in runs] == ["failed", "failed"]
    job = selectors.with_jobs([comparison])[0].job
    assert job.status == "failed" and checkpoints[0].path in job.error and job.is_finished


def test_a_pair_token_is_opaque_bound_to_its_judge_and_expires(personas, compared):
    comparison = compared.comparison
    pair = next_pair(user=personas.owner, comparison=comparison, rng=random.Random(3))
    again = next_pair(user=personas.owner, comparison=comparison, rng=random.Random(3))
    assert {pair.left.pk, pair.right.pk} == {again.left.pk, again.right.pk} and pair.token != again.token  # random
    ids = {str(i) for s in (pair.left, pair.right) for i in (s.pk, s.checkpoint_id)}
    assert len(pair.token) >= 40 and not any(i in pair.token for i in ids if len(i) > 1)
    with pytest.raises(ValidationError, match="not a pair this page was given"):  # someone else's ticket
        judgment_record(user=personas.teammate, comparison=comparison, token=pair.token, winner="left")
    PairTicket.objects.filter(token=pair.token).update(created_at=timezone.now() - timedelta(hours=5))
    with pytest.raises(ValidationError, match="this pair expired"):
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner="left")
    judgment_record(user=personas.owner, comparison=comparison, token=again.token, winner="left")


def test_sides_are_balanced_per_judge(personas):
    from tests.compare.conftest import make_comparison

    checkpoints = make_checkpoints(personas.project, 2)
    comparison = make_comparison(personas.owner, checkpoints, correct=[[1, 2, 3], [3, 2, 1]])
    lefts = Counter()
    for seed in range(PROMPTS):
        pair = next_pair(user=personas.owner, comparison=comparison, rng=random.Random(seed))
        lefts[pair.left.checkpoint_id] += 1
        judgment_record(user=personas.owner, comparison=comparison, token=pair.token, winner="left")
    assert abs(lefts[checkpoints[0].pk] - lefts[checkpoints[1].pk]) <= 1  # 3 pairs: 2 and 1, never 3 and 0
    bias = selectors.position_bias(comparison)
    assert (bias.left, bias.right, bias.ties, bias.share) == (3, 0, 0, 1.0) and bias.low < 0.5
