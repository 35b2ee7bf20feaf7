"""Writes for comparisons: create one (validated, one field named per mistake; one eval run
per checkpoint), cancel it (its runs), store what its runs sampled, hand a person the next
blind pair, and record their verdict."""

from __future__ import annotations

import random
import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from engine import rewards as engine_rewards
from engine import tasks as engine_tasks
from engine.events import RolloutRecord
from webapp.compare.models import (
    Comparison,
    ComparisonEntry,
    ComparisonPrompt,
    ComparisonSample,
    Judgment,
    PairTicket,
    PromptResult,
    Winner,
)
from webapp.datasets.files import preference_prompt
from webapp.datasets.models import Dataset, Prompt
from webapp.datasets.services import dataset_create
from webapp.projects.models import Project
from webapp.projects.selectors import AuthUser, can_label, can_write, projects_for
from webapp.runs.models import Checkpoint, Run
from webapp.runs.services import run_cancel, run_create

MAX_CHECKPOINTS = 8
MAX_K = 16
MAX_PROMPTS = 500
MAX_NEW_TOKENS = 4096
MAX_TEMPERATURE = 2.0
PROMPTS_PER_BATCH = 8  # progress is reported, and a stop request honoured, after each batch
PAIR_TTL = timedelta(hours=4)  # a blind pair handed out is judged within this, or drawn again


@dataclass
class SamplingSpec:
    """What a comparison samples, and how; the same for every checkpoint."""

    task: str | None = "arithmetic"
    dataset_id: int | None = None
    split: str = "test"
    num_prompts: int = 20
    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 128
    rewards: tuple[str, ...] = ("format",)
    accuracy_reward: str = "task"
    seed: int = 0


SPEC_FIELDS = [f.name for f in fields(SamplingSpec) if f.name != "dataset_id"] + ["dataset"]

# ---- creating -----------------------------------------------------------------------------


def _checkpoints(user: AuthUser, ids: list[int]) -> list[Checkpoint]:
    """The chosen checkpoints, in the order given; each must be one `user` may see."""
    ids = list(dict.fromkeys(ids))
    if not 2 <= len(ids) <= MAX_CHECKPOINTS:
        raise ValidationError({"checkpoints": f"choose 2 to {MAX_CHECKPOINTS} different checkpoints"})
    found = Checkpoint.objects.filter(pk__in=ids, run__project__in=projects_for(user)).select_related("run").in_bulk()
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise ValidationError({"checkpoints": f"not a checkpoint you can see: {', '.join(missing)}"})
    chosen = [found[i] for i in ids]
    if len({c.run.project_id for c in chosen}) != 1:
        raise ValidationError({"checkpoints": "the checkpoints belong to several projects: compare within one"})
    return chosen


def _check_source(project: Project, spec: SamplingSpec) -> None:
    if (spec.task is None) == (spec.dataset_id is None):
        raise ValidationError({"prompts": "choose a built-in task or a dataset of the project"})
    if spec.task is not None and spec.task not in engine_tasks.names():
        raise ValidationError({"prompts": f"the built-in tasks are {', '.join(engine_tasks.names())}"})
    if spec.dataset_id is not None and not project.datasets.filter(pk=spec.dataset_id).exists():
        raise ValidationError({"prompts": f"not a dataset of {project.name}"})


def _check_costs(spec: SamplingSpec) -> None:
    """What a comparison may cost (it samples every checkpoint); the sampling rules
    themselves are EvalConfig's, checked when its runs are created."""
    limits = (("num_prompts", spec.num_prompts, 1, MAX_PROMPTS), ("k", spec.k, 1, MAX_K),
              ("max_new_tokens", spec.max_new_tokens, 1, MAX_NEW_TOKENS))
    for field, value, low, high in limits:
        if not low <= value <= high:
            raise ValidationError({field: f"must be between {low} and {high}"})
    if not 0 <= spec.temperature <= MAX_TEMPERATURE:
        raise ValidationError({"temperature": f"must be between 0 (greedy) and {MAX_TEMPERATURE:g}"})


def _check_rewards(spec: SamplingSpec) -> None:
    known = engine_rewards.names()
    unknown = [r for r in spec.rewards if r not in known]
    if unknown:
        raise ValidationError({"rewards": f"unknown: {', '.join(unknown)} (known: {', '.join(known)})"})
    if spec.accuracy_reward != "task" and spec.accuracy_reward not in known:
        raise ValidationError({"accuracy_reward": f"must be task or one of {', '.join(known)}"})


def _default_name(checkpoints: list[Checkpoint]) -> str:
    return " vs ".join(f"{c.run.name} @ {c.step}" for c in checkpoints)[:200]


def eval_config(spec: SamplingSpec, checkpoint: Checkpoint) -> dict[str, Any]:
    """The eval run's config for one checkpoint: everything but the model is shared."""
    source = {"task": spec.task} if spec.task is not None else {"task": None, "dataset": f"dataset:{spec.dataset_id}"}
    return {"model": f"checkpoint:{checkpoint.pk}", **source, "split": spec.split, "num_prompts": spec.num_prompts,
            "k": spec.k, "temperature": spec.temperature, "top_p": spec.top_p, "max_new_tokens": spec.max_new_tokens,
            "rewards": {r: 1.0 for r in spec.rewards}, "accuracy_reward": spec.accuracy_reward, "seed": spec.seed,
            "prompts_per_batch": PROMPTS_PER_BATCH}


def comparison_create(*, user: AuthUser, checkpoint_ids: list[int], spec: SamplingSpec,
                      name: str = "") -> Comparison:
    """A comparison of the checkpoints (in this column order): one eval run per checkpoint,
    each queued for a worker once it commits. Only owners of the checkpoints' project start
    one (it takes a GPU)."""
    checkpoints = _checkpoints(user, checkpoint_ids)
    project = checkpoints[0].run.project
    if not can_write(user, project.pk):
        raise PermissionDenied("only project owners start comparisons")
    name = name.strip() or _default_name(checkpoints)
    if len(name) > 200:
        raise ValidationError({"name": "must be at most 200 characters"})
    _check_source(project, spec)
    _check_costs(spec)
    _check_rewards(spec)
    with transaction.atomic():
        comparison = Comparison.objects.create(
            project=project, name=name, task=spec.task or "", dataset_id=spec.dataset_id, split=spec.split,
            num_prompts=spec.num_prompts, k=spec.k, temperature=spec.temperature, top_p=spec.top_p,
            max_new_tokens=spec.max_new_tokens, rewards={r: 1.0 for r in spec.rewards},
            accuracy_reward=spec.accuracy_reward, seed=spec.seed, created_by=user)
        for position, checkpoint in enumerate(checkpoints):
            run = _eval_run(user, comparison, spec, checkpoint)
            ComparisonEntry.objects.create(comparison=comparison, checkpoint=checkpoint, position=position, run=run)
    return comparison


def _eval_run(user: AuthUser, comparison: Comparison, spec: SamplingSpec, checkpoint: Checkpoint) -> Run:
    """The eval run sampling `checkpoint`; EvalConfig's rule, if broken, is named by field."""
    try:
        return run_create(project=comparison.project, user=user, stage="eval", config=eval_config(spec, checkpoint),
                          name=f"{comparison.name} · {checkpoint.run.name} @ {checkpoint.step}"[:200])
    except ValidationError as exc:
        raise ValidationError({_field_named(message): message
                               for messages in exc.message_dict.values() for message in messages}) from None


def _field_named(sentence: str) -> str:
    """The first comparison field a sentence of EvalConfig's mentions (the form shows the
    rule beside it); `prompts` when it names none."""
    found = [(m.start(), name) for name in SPEC_FIELDS if (m := re.search(rf"\b{name}\b", sentence))]
    return min(found)[1] if found else "prompts"


def comparison_cancel(*, user: AuthUser, comparison: Comparison) -> None:
    """A comparison's queued runs end now; running ones stop after their current batch."""
    if not can_write(user, comparison.project_id):
        raise PermissionDenied("only project owners cancel comparisons")
    for entry in comparison.entries.select_related("run"):
        if entry.run is not None:
            run_cancel(run=entry.run, user=user)


def comparison_samples_store(*, run: Run, records: list[RolloutRecord]) -> None:
    """What the eval run of a comparison's column reported, stored as the comparison's
    prompts, samples and per-prompt results (idempotent: a batch reported twice is kept
    once). The worker calls this beside storing the run's own rollouts."""
    entry = ComparisonEntry.objects.select_related("comparison").filter(run=run).first()
    if entry is None:
        return
    comparison, checkpoint_id = entry.comparison, entry.checkpoint_id
    by_prompt: dict[int, list[RolloutRecord]] = defaultdict(list)
    for r in records:
        by_prompt[int(r.metadata["question_index"])].append(r)
    with transaction.atomic():
        ComparisonPrompt.objects.bulk_create(
            [ComparisonPrompt(comparison=comparison, index=i, question=_clean(rs[0].metadata["question"]),
                              reference=_clean(rs[0].reference)) for i, rs in by_prompt.items()],
            ignore_conflicts=True)
        ComparisonSample.objects.bulk_create(
            [_sample(comparison, checkpoint_id, i, r) for i, rs in by_prompt.items() for r in rs],
            ignore_conflicts=True)
        PromptResult.objects.bulk_create([_result(comparison, checkpoint_id, i, rs) for i, rs in by_prompt.items()],
                                         ignore_conflicts=True)


def _sample(comparison: Comparison, checkpoint_id: int, index: int, r: RolloutRecord) -> ComparisonSample:
    rewards = {k: v for k, v in r.rewards.items() if k != "correct"}
    return ComparisonSample(
        comparison=comparison, checkpoint_id=checkpoint_id, prompt_index=index,
        sample_index=r.sample_index, completion=_clean(r.completion), reasoning=_clean(r.reasoning),
        answer=_clean(r.answer), rewards=rewards, correct=bool(r.metadata.get("correct")),
        total=sum(comparison.rewards.get(k, 0.0) * v for k, v in rewards.items()),
        token_count=r.token_count, finish_reason=r.finish_reason[:16])


def _result(comparison: Comparison, checkpoint_id: int, index: int, rs: list[RolloutRecord]) -> PromptResult:
    return PromptResult(
        comparison=comparison, checkpoint_id=checkpoint_id, prompt_index=index, n=len(rs),
        correct=sum(bool(r.metadata.get("correct")) for r in rs), cons=float(rs[0].metadata.get("cons", 0.0)),
        majority=_clean(rs[0].metadata.get("majority") or ""),
        length_mean=sum(r.token_count for r in rs) / len(rs))


def _clean(text: Any) -> str:
    """PostgreSQL text holds no NUL characters; a model may still write one."""
    return str(text).replace("\x00", "\ufffd")


# ---- blind pairs --------------------------------------------------------------------------


@dataclass
class BlindPair:
    """Two samples of one prompt by two checkpoints; `token` is an opaque ticket, bound to
    the judge and expiring, so nothing the page holds tells which checkpoint wrote which."""

    token: str
    prompt: ComparisonPrompt
    left: ComparisonSample
    right: ComparisonSample
    remaining: int  # open pairs, this one included (the skipped one not)


def _judged_keys(comparison: Comparison, user: AuthUser) -> set[tuple[int, int, int]]:
    rows = Judgment.objects.filter(comparison=comparison, user=user).values_list(
        "prompt_index", "left_checkpoint_id", "right_checkpoint_id")
    return {(p, min(a, b), max(a, b)) for p, a, b in rows}


def _open_keys(comparison: Comparison, user: AuthUser) -> list[tuple[int, int, int]]:
    """(prompt index, lower checkpoint id, higher checkpoint id) the user has yet to judge,
    over the prompts every checkpoint has answered."""
    counts: dict[int, int] = {}
    for index in ComparisonSample.objects.filter(comparison=comparison, sample_index=0).values_list(
            "prompt_index", flat=True):
        counts[index] = counts.get(index, 0) + 1
    ids = sorted(ComparisonEntry.objects.filter(comparison=comparison).order_by().values_list("checkpoint_id", flat=True))
    ready = [p for p, n in counts.items() if n == len(ids)]
    judged = _judged_keys(comparison, user)
    pairs = [(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]]
    return [(p, a, b) for p in ready for a, b in pairs if (p, a, b) not in judged]


def _sides(comparison: Comparison, user: AuthUser, a: int, b: int, rng: random.Random) -> tuple[int, int]:
    """(left, right) checkpoints: the one this judge has seen on the left less often goes
    left (people favour one side), a coin decides between equals."""
    lefts = Counter(Judgment.objects.filter(comparison=comparison, user=user, left_checkpoint__in=[a, b],
                                            right_checkpoint__in=[a, b]).values_list("left_checkpoint_id", flat=True))
    if lefts[a] != lefts[b]:
        return (a, b) if lefts[a] < lefts[b] else (b, a)
    return (a, b) if rng.random() < 0.5 else (b, a)


def next_pair(*, user: AuthUser, comparison: Comparison, skip: str = "",
              rng: random.Random | None = None) -> BlindPair | None:
    """A random pair `user` has not judged (nor the one in the `skip` token, the pair on
    screen, so that a prefetched next pair is a different one); None when none is left.
    Sides are balanced per judge; each side shows one of its checkpoint's k samples at random."""
    rng = rng or random.SystemRandom()
    skipped = _pair_key(comparison, skip, user) if skip else None
    choices = [k for k in _open_keys(comparison, user) if k != skipped]
    if not choices:
        return None
    prompt_index, a, b = rng.choice(choices)
    left_ckpt, right_ckpt = _sides(comparison, user, a, b, rng)
    samples = {(s.checkpoint_id, s.sample_index): s for s in ComparisonSample.objects.filter(
        comparison=comparison, prompt_index=prompt_index, checkpoint_id__in=[a, b])}
    left = rng.choice([s for (c, _), s in samples.items() if c == left_ckpt])
    right = rng.choice([s for (c, _), s in samples.items() if c == right_ckpt])
    prompt = ComparisonPrompt.objects.get(comparison=comparison, index=prompt_index)
    ticket = PairTicket.objects.create(token=secrets.token_urlsafe(32), comparison=comparison, user=user,
                                       left=left, right=right)
    return BlindPair(ticket.token, prompt, left, right, remaining=len(choices))


def _pair_samples(comparison: Comparison, token: str, user: AuthUser) -> tuple[ComparisonSample, ComparisonSample]:
    """The (left, right) samples of `user`'s ticket `token`; another judge's ticket is
    refused as unknown."""
    ticket = PairTicket.objects.select_related("left", "right").filter(token=token, user=user).first()
    if ticket is None:
        raise ValidationError({"pair": "not a pair this page was given: reload the page"})
    if ticket.comparison_id != comparison.pk:
        raise ValidationError({"pair": "not a pair of this comparison"})
    if ticket.created_at < timezone.now() - PAIR_TTL:
        raise ValidationError({"pair": "this pair expired: reload the page for a new one"})
    return ticket.left, ticket.right


def _pair_key(comparison: Comparison, token: str, user: AuthUser) -> tuple[int, int, int] | None:
    try:
        left, right = _pair_samples(comparison, token, user)
    except ValidationError:
        return None
    a, b = sorted((left.checkpoint_id, right.checkpoint_id))
    return left.prompt_index, a, b


def judgment_record(*, user: AuthUser, comparison: Comparison, token: str, winner: Any) -> Judgment:
    """Record `user`'s verdict on the pair in `token`: left, right or tie. Owners and
    annotators judge; each person judges a (prompt, pair of checkpoints) once."""
    if not can_label(user, comparison.project_id):
        raise PermissionDenied("only owners and annotators judge")
    if winner not in Winner.values:
        raise ValidationError({"winner": f"must be one of {', '.join(Winner.values)}"})
    left, right = _pair_samples(comparison, token, user)
    try:
        with transaction.atomic():
            return Judgment.objects.create(
                comparison=comparison, user=user, prompt_index=left.prompt_index, left=left, right=right,
                left_checkpoint_id=left.checkpoint_id, right_checkpoint_id=right.checkpoint_id, winner=winner)
    except IntegrityError:
        raise ValidationError({"pair": "you judged these two checkpoints on this prompt already"}) from None


def preference_from_judgments(*, user: AuthUser, comparison: Comparison, name: str) -> Dataset:
    """A preference dataset from the comparison's blind verdicts: the sample a person chose as
    chosen, the other as rejected (ties left out), each pair naming its judge and checkpoints."""
    if not can_write(user, comparison.project_id):
        raise PermissionDenied("only project owners make datasets")
    questions = dict(ComparisonPrompt.objects.filter(comparison=comparison).values_list("index", "question"))
    decided = (comparison.judgments.exclude(winner=Winner.TIE).select_related("left", "right", "user")
               .order_by("created_at", "pk"))
    prompts: list[Prompt] = []
    for j in decided:
        chosen, rejected = (j.left, j.right) if j.winner == Winner.LEFT else (j.right, j.left)
        prompts.append(preference_prompt(len(prompts), questions.get(j.prompt_index, ""), chosen.completion,
                                         rejected.completion, {"source": {
                                             "type": "judgment", "comparison": comparison.pk,
                                             "judge": j.user.get_username(), "prompt_index": j.prompt_index,
                                             "chosen_checkpoint": chosen.checkpoint_id,
                                             "rejected_checkpoint": rejected.checkpoint_id}}))
    if not prompts:
        raise ValidationError({"judgments": "no decided verdict yet (ties are left out): judge some pairs first"})
    return dataset_create(project=comparison.project, user=user, name=name, kind=Dataset.Kind.PREFERENCE,
                          prompts=prompts, source={"type": "judgments", "comparison": comparison.pk},
                          description=f"Blind verdicts of comparison {comparison.name!r} (chosen / rejected).")


PIPELINE_PROMPTS = 50  # held-out prompts an end-to-end comparison samples


def pipeline_comparison(*, pipeline_id: int) -> Comparison | None:
    """Compare the last checkpoint of every stage of a finished pipeline on held-out prompts
    (the first stage's task or dataset, its accuracy reward and length): what each stage
    bought. Once per pipeline; None when fewer than two stages saved a checkpoint."""
    from webapp.runs.models import Pipeline

    with transaction.atomic():  # two deliveries at once: the second waits, then finds it made
        pipeline = Pipeline.objects.select_for_update(of=("self",)).select_related("created_by").get(pk=pipeline_id)
        if pipeline.comparisons.exists() or pipeline.created_by is None:  # type: ignore[attr-defined]
            return None
        return _compare_stages(pipeline)


def _compare_stages(pipeline: Any) -> Comparison | None:
    runs = list(pipeline.runs.order_by("pipeline_index"))
    checkpoints = [c for c in (Checkpoint.objects.filter(run=r).order_by("-step").first() for r in runs) if c]
    if len(checkpoints) < 2:
        return None
    first = runs[0].config
    dataset = str(first.get("dataset") or "")
    spec = SamplingSpec(
        task=first.get("task") if not dataset else None,
        dataset_id=int(dataset.split(":", 1)[1]) if dataset.startswith("dataset:") else None,
        num_prompts=PIPELINE_PROMPTS, max_new_tokens=min(int(first.get("max_new_tokens") or 128), MAX_NEW_TOKENS),
        accuracy_reward=str(first.get("accuracy_reward") or "task"))
    comparison = comparison_create(user=pipeline.created_by, checkpoint_ids=[c.pk for c in checkpoints[:MAX_CHECKPOINTS]],
                                   spec=spec, name=f"{pipeline.name}: every stage"[:200])
    comparison.pipeline = pipeline
    comparison.save(update_fields=["pipeline"])
    return comparison
