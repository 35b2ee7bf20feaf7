"""Reads of comparisons, scoped to the caller's projects: figures per checkpoint, the
prompts side by side, win rates of the blind judgments and Bradley-Terry / Elo ratings."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, QuerySet
from django.http import Http404

from engine.metrics import pass_at_k
from webapp.compare import stats
from webapp.compare.diff import Segment, word_diff
from webapp.compare.models import (
    Comparison,
    ComparisonEntry,
    ComparisonPrompt,
    ComparisonSample,
    Judgment,
    PromptResult,
)
from webapp.projects.models import Project
from webapp.projects.selectors import User, projects_for
from webapp.runs.models import FINISHED, Checkpoint, Run, Status

PAGE_SIZE = 10
# every prompt; those where the checkpoints' pass@1 differ; flips against the first column
# (its baseline): "fixed" (the baseline's majority answer wrong, a later one's right), "broken"
SHOWN = ("all", "differ", "fixed", "broken")


def comparisons_for(user: User) -> QuerySet[Comparison]:
    return Comparison.objects.filter(project__in=projects_for(user))


def comparison_for(user: User, comparison_id: int) -> Comparison:
    """The comparison if `user` is a member of its project; 404 otherwise."""
    found = comparisons_for(user).select_related("project", "dataset", "created_by").filter(pk=comparison_id).first()
    if found is None:
        raise Http404("No such comparison.")
    return found


def comparison_list(user: User) -> list[Comparison]:
    """The newest comparisons, each with `columns`, `judged` and its runs' `job`."""
    found: list[Comparison] = list(comparisons_for(user).select_related("project").annotate(
        columns=Count("entries", distinct=True), judged=Count("judgments", distinct=True))[:200])
    return with_jobs(found)


@dataclass
class Job:
    """A comparison's sampling, read off its eval runs (one per checkpoint)."""

    status: str
    done: int  # prompts sampled, over all checkpoints
    total: int
    error: str = ""

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def job_of(runs: list[Run], num_prompts: int) -> Job:
    """Running while any run is (or some are done and others wait); once all have ended,
    failed if one failed, else cancelled if one was, else succeeded."""
    statuses = {r.status for r in runs}
    if not runs or statuses <= set(FINISHED):
        status = next((s for s in (Status.FAILED, Status.CANCELLED) if s in statuses), Status.SUCCEEDED)
    else:
        status = Status.QUEUED if statuses == {Status.QUEUED} else Status.RUNNING
    done = sum(num_prompts if r.status == Status.SUCCEEDED else r.current_step for r in runs)
    error = next((r.error for r in runs if r.status == Status.FAILED and r.error), "")
    return Job(status=status, done=done, total=num_prompts * len(runs), error=error)


def with_jobs(comparisons: list[Comparison]) -> list[Comparison]:
    """Set `job` on each comparison from its runs, in one query."""
    runs: dict[int, list[Run]] = defaultdict(list)
    entries = (ComparisonEntry.objects.filter(comparison__in=comparisons, run__isnull=False)
               .select_related("run").order_by("position"))
    for entry in entries.only("comparison_id", "run__status", "run__current_step", "run__error"):
        assert entry.run is not None  # run__isnull=False
        runs[entry.comparison_id].append(entry.run)
    for comparison in comparisons:
        comparison.job = job_of(runs[comparison.pk], comparison.num_prompts)  # type: ignore[attr-defined]
    return comparisons


def columns(comparison: Comparison) -> list[Checkpoint]:
    """The compared checkpoints in column order (with their runs); sets `comparison.job`
    from the eval runs sampling them, read in the same query."""
    entries = list(ComparisonEntry.objects.filter(comparison=comparison)
                   .select_related("checkpoint__run", "run").order_by("position"))
    comparison.job = job_of([e.run for e in entries if e.run is not None],  # type: ignore[attr-defined]
                            comparison.num_prompts)
    return [e.checkpoint for e in entries]


def checkpoint_choices(user: User) -> list[Checkpoint]:
    """Checkpoints a person may compare: those of projects they own, newest runs first."""
    return list(Checkpoint.objects.filter(run__project__in=projects_for(user),
                                          run__project__memberships__user=user,
                                          run__project__memberships__role="owner")
                .select_related("run__project").order_by("-run__created_at", "-run_id", "step")[:300])


# ---- figures per checkpoint ---------------------------------------------------------------


Results = dict[int, dict[int, PromptResult]]  # prompt index -> checkpoint id -> result


def prompt_results(comparison: Comparison) -> Results:
    out: Results = defaultdict(dict)
    for r in PromptResult.objects.filter(comparison=comparison):
        out[r.prompt_index][r.checkpoint_id] = r
    return out


@dataclass
class Figures:
    checkpoint: Checkpoint
    prompts: int = 0
    pass1: float | None = None
    passk: float | None = None
    cons: float | None = None
    length: float | None = None
    reward: float | None = None
    wins: int = 0  # prompts where its pass@1 beats the first column's
    losses: int = 0
    ties: int = 0


def figures(comparison: Comparison, cols: list[Checkpoint], results: Results) -> list[Figures]:
    """pass@1 (mean share correct), pass@k (unbiased estimator, engine.metrics.pass_at_k),
    cons@k and mean length over the prompts each checkpoint answered, plus per-prompt wins,
    losses and ties of pass@1 against the first column (the baseline)."""
    rewards = dict(ComparisonSample.objects.filter(comparison=comparison).values("checkpoint_id")
                   .annotate(mean=Avg("total")).values_list("checkpoint_id", "mean"))
    out = []
    base = cols[0].pk
    for ckpt in cols:
        rows = [by[ckpt.pk] for by in results.values() if ckpt.pk in by]
        fig = Figures(ckpt, prompts=len(rows), reward=rewards.get(ckpt.pk))
        if rows:
            fig.pass1 = sum(r.correct / r.n for r in rows) / len(rows)
            fig.passk = sum(pass_at_k(r.n, r.correct, min(comparison.k, r.n)) for r in rows) / len(rows)
            fig.cons = sum(r.cons for r in rows) / len(rows)
            fig.length = sum(r.length_mean for r in rows) / len(rows)
        for by in results.values():
            if ckpt.pk != base and ckpt.pk in by and base in by:
                mine, theirs = by[ckpt.pk].correct / by[ckpt.pk].n, by[base].correct / by[base].n
                fig.wins += mine > theirs
                fig.losses += mine < theirs
                fig.ties += mine == theirs
        out.append(fig)
    return out


# ---- prompts side by side -----------------------------------------------------------------


@dataclass
class Cell:
    checkpoint: Checkpoint
    result: PromptResult | None
    sample: ComparisonSample | None
    reasoning_diff: list[Segment] | None = None  # against the first column; None: no diff shown
    answer_diff: list[Segment] | None = None
    outcome: str = ""  # "win" / "loss" / "tie" of pass@1 against the first column; "" for it


@dataclass
class PromptRow:
    prompt: ComparisonPrompt
    cells: list[Cell] = field(default_factory=list)


def _differ(by: dict[int, PromptResult]) -> bool:
    return len({r.correct / r.n for r in by.values()}) > 1


def _solved(result: PromptResult) -> bool:
    """A prompt solved by a checkpoint: its majority answer is right (cons@k)."""
    return result.cons >= 1.0


def _flipped(by: dict[int, PromptResult], base: int, shown: str) -> bool:
    """Whether some column flipped this prompt against the baseline column, in `shown`'s way."""
    if base not in by:
        return False
    was = _solved(by[base])
    return any(_solved(r) != was and (was if shown == "broken" else not was) for c, r in by.items() if c != base)


def _shown(by: dict[int, PromptResult], base: int, shown: str) -> bool:
    if shown == "differ":
        return _differ(by)
    if shown in ("fixed", "broken"):
        return _flipped(by, base, shown)
    return True


@dataclass
class Flips:
    checkpoint: Checkpoint
    fixed: int  # prompts the baseline got wrong and this checkpoint right (majority answers)
    broken: int  # and the other way


def flips(cols: list[Checkpoint], results: Results) -> list[Flips]:
    """Per column after the first: how many prompts it fixed and broke against the first."""
    base = cols[0].pk if cols else None
    out = []
    for col in cols[1:]:
        pairs = [(by[base], by[col.pk]) for by in results.values() if base in by and col.pk in by]
        out.append(Flips(col, fixed=sum(not _solved(b) and _solved(c) for b, c in pairs),
                         broken=sum(_solved(b) and not _solved(c) for b, c in pairs)))
    return out


def prompt_page(comparison: Comparison, cols: list[Checkpoint], results: Results, *, shown: str = "all",
                page: int = 1, sample: int = 0) -> tuple[list[PromptRow], int]:
    """One page of prompts with sample `sample` of each checkpoint side by side; and the
    number of pages."""
    indexes = sorted(i for i, by in results.items() if _shown(by, cols[0].pk if cols else -1, shown))
    pages = max(1, -(-len(indexes) // PAGE_SIZE))
    chosen = indexes[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    prompts = ComparisonPrompt.objects.filter(comparison=comparison, index__in=chosen).order_by("index")
    samples = {(s.prompt_index, s.checkpoint_id): s for s in ComparisonSample.objects.filter(
        comparison=comparison, prompt_index__in=chosen, sample_index=sample)}
    rows = []
    for p in prompts:
        cells = [Cell(c, results[p.index].get(c.pk), samples.get((p.index, c.pk))) for c in cols]
        _mark(cells)
        rows.append(PromptRow(p, cells))
    return rows, pages


def _mark(cells: list[Cell]) -> None:
    """Diff each column against the first, and say who did better on the prompt."""
    base = cells[0]
    for cell in cells[1:]:
        if base.sample is not None and cell.sample is not None:
            cell.reasoning_diff = word_diff(base.sample.reasoning, cell.sample.reasoning)
            cell.answer_diff = word_diff(base.sample.answer, cell.sample.answer)
        if base.result is not None and cell.result is not None:
            mine, theirs = cell.result.correct / cell.result.n, base.result.correct / base.result.n
            cell.outcome = "win" if mine > theirs else "loss" if mine < theirs else "tie"


# ---- judgments ----------------------------------------------------------------------------


@dataclass
class PairRate:
    a: Checkpoint
    b: Checkpoint
    wins: int
    losses: int
    ties: int
    rate: float  # a's win rate, a tie counting half
    low: float  # Wilson 95% interval of the rate
    high: float


@dataclass
class Rating:
    checkpoint: Checkpoint
    elo: float
    low: float  # bootstrap 95% interval
    high: float
    games: int
    strength: float


def _games(judgments: QuerySet[Judgment]) -> list[tuple[int, int, float]]:
    score = {"left": 1.0, "right": 0.0, "tie": 0.5}
    return [(a, b, score[w]) for a, b, w in judgments.values_list("left_checkpoint_id", "right_checkpoint_id",
                                                                  "winner")]


def pair_rates(comparison: Comparison, cols: list[Checkpoint]) -> list[PairRate]:
    """For every pair of columns (earlier one first): its judged wins, losses, ties and
    win rate with a Wilson interval."""
    tally: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])  # (left, right) -> [left won, right won, tie]
    for left, right, score in _games(Judgment.objects.filter(comparison=comparison)):
        tally[(left, right)][0 if score == 1 else 1 if score == 0 else 2] += 1
    out = []
    for n, a in enumerate(cols):
        for b in cols[n + 1:]:
            ab, ba = tally.get((a.pk, b.pk), [0, 0, 0]), tally.get((b.pk, a.pk), [0, 0, 0])
            wins, losses, ties = ab[0] + ba[1], ab[1] + ba[0], ab[2] + ba[2]
            games = wins + losses + ties
            rate = (wins + ties / 2) / games if games else 0.5
            low, high = stats.wilson_interval(wins + ties / 2, games)
            out.append(PairRate(a, b, wins, losses, ties, rate, low, high))
    return out


@dataclass
class PositionBias:
    """How often judges chose the left side of a pair: near half when sides do not matter."""

    left: int
    right: int
    ties: int
    share: float  # left wins among decided verdicts
    low: float  # Wilson 95% interval of the share
    high: float


def position_bias(comparison: Comparison) -> PositionBias:
    counts = Counter(Judgment.objects.filter(comparison=comparison).values_list("winner", flat=True))
    left, right = counts["left"], counts["right"]
    low, high = stats.wilson_interval(left, left + right)
    return PositionBias(left, right, counts["tie"], left / (left + right) if left + right else 0.5, low, high)


def judging_blind(results: Results, columns: int, mine: int) -> bool:
    """True while a judge is part-way through the comparison's pairs: the samples side by side
    (which say which checkpoint wrote what) stay hidden from them until they are done."""
    ready = sum(1 for by in results.values() if len(by) == columns)
    return 0 < mine < ready * columns * (columns - 1) // 2


def ratings(judgments: QuerySet[Judgment]) -> list[Rating]:
    """Bradley-Terry strengths and Elo (with bootstrap intervals) of every judged
    checkpoint, best first."""
    games = _games(judgments)
    ids = sorted({a for a, _, _ in games} | {b for _, b, _ in games})
    if not ids:
        return []
    pos = {c: i for i, c in enumerate(ids)}
    indexed = [(pos[a], pos[b], s) for a, b, s in games]
    strengths = stats.bradley_terry(stats.win_matrix(len(ids), indexed))
    elos = stats.elo(strengths)
    low, high = stats.elo_intervals(len(ids), indexed)
    counts: dict[int, int] = defaultdict(int)
    for a, b, _ in games:
        counts[a] += 1
        counts[b] += 1
    checkpoints = Checkpoint.objects.select_related("run").in_bulk(ids)
    out = [Rating(checkpoints[c], float(elos[i]), float(low[i]), float(high[i]), counts[c], float(strengths[i]))
           for i, c in enumerate(ids)]
    return sorted(out, key=lambda r: -r.elo)


def comparison_ratings(comparison: Comparison) -> list[Rating]:
    return ratings(Judgment.objects.filter(comparison=comparison))


def project_ratings(project: Project) -> list[Rating]:
    """Ratings across all the project's comparisons: a checkpoint judged in several
    comparisons gets one rating from all its games."""
    return ratings(Judgment.objects.filter(comparison__project=project))


def my_judgments(comparison: Comparison, user: User) -> int:
    return Judgment.objects.filter(comparison=comparison, user=user).count() if user.is_authenticated else 0


def pair_json(pair: Any) -> dict[str, Any]:
    """A blind pair as the judging page receives it: text only, no checkpoint."""
    def side(s: ComparisonSample) -> dict[str, Any]:
        return {"reasoning": s.reasoning, "answer": s.answer, "completion": s.completion, "tokens": s.token_count}

    return {"token": pair.token, "question": pair.prompt.question, "reference": pair.prompt.reference,
            "prompt_index": pair.prompt.index, "left": side(pair.left), "right": side(pair.right),
            "remaining": pair.remaining}
