"""Preference datasets (TRL's prompt / chosen / rejected): from the best and worst samples of
GRPO groups, and from blind verdicts; exported and imported back as preference pairs."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from webapp.datasets import files
from webapp.datasets import services as datasets
from webapp.datasets.models import Dataset
from webapp.runs.models import Rollout, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def groups(personas):
    run = Run.objects.create(project=personas.project, name="grpo", stage="grpo", status="succeeded")
    for step, prompt, rewards in ((1, "2+2?", (1.5, 0.0, 0.5)), (1, "3+3?", (1.0, 1.0, 1.0)), (2, "2+2?", (0.2, 1.2))):
        for i, reward in enumerate(rewards):
            Rollout.objects.create(run=run, step=step, sample_index=i, prompt_hash=hash(prompt) % 1000, prompt=prompt,
                                   completion=f"{prompt} s{step} #{i} <b>r={reward}</b>", reward=reward)
    return run


def test_each_groups_best_and_worst_become_a_pair_and_export_as_trl_reads_them(client, personas, groups):
    client.force_login(personas.owner)
    response = client.post(reverse("review-filter-preference"), {"runs": str(groups.pk), "filter": "", "name": "prefs",
                                                                  "limit": "10", "min_margin": "0.1"})
    dataset = Dataset.objects.get(name="prefs")
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert dataset.kind == "preference" and dataset.row_count == 2  # the all-equal group has nothing to prefer
    rows = datasets.export_rows(dataset)
    pairs = {(r["chosen"], r["rejected"]) for r in rows}
    assert pairs == {("2+2? s1 #0 <b>r=1.5</b>", "2+2? s1 #1 <b>r=0.0</b>"),
                     ("2+2? s2 #1 <b>r=1.2</b>", "2+2? s2 #0 <b>r=0.2</b>")}
    assert all(set(r) == {"prompt", "chosen", "rejected", "source"} and r["source"]["type"] == "group" for r in rows)
    page = client.get(reverse("dataset-detail", args=[dataset.pk])).content.decode()
    assert "<th>Chosen</th><th>Rejected</th>" in page and "&lt;b&gt;r=1.5&lt;/b&gt;" in page
    assert 'id="launch-sft"' not in page  # no stage trains on preferences here; they are for export


def test_a_margin_nothing_clears_is_refused_and_annotators_make_no_datasets(client, personas, groups):
    client.force_login(personas.owner)
    client.post(reverse("review-filter-preference"), {"runs": str(groups.pk), "filter": "", "name": "none",
                                                       "min_margin": "5"})
    assert not Dataset.objects.exists()
    client.force_login(personas.teammate)
    client.post(reverse("review-filter-preference"), {"runs": str(groups.pk), "filter": "", "name": "mine"})
    assert not Dataset.objects.exists()


def test_a_preference_file_imports_as_pairs(tmp_path, personas):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                            for i in range(3)))
    assert files.detect_kind(path) == "preference"
    stored = files.read_prompts(path, "preference")
    assert [(p.text, p.completion, p.metadata["rejected"]) for p in stored] == [
        (f"q{i}", f"good {i}", f"bad {i}") for i in range(3)]
    path.write_text(json.dumps({"prompt": "q", "chosen": "good", "rejected": ""}) + "\n")
    with pytest.raises(files.DatasetError, match="line 1: field 'rejected': a preference row needs"):
        files.read_prompts(path, "preference")
