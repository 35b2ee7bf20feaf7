"""A dataset put into the local Hugging Face `datasets` cache as if it had been downloaded
from the Hub: what an operator without network access has, and what tests can make."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any


def cache_hub_dataset(cache: Path, repo: str, splits: dict[str, list[dict[str, Any]]]) -> None:
    """Build `splits` with datasets' own JSON builder and lay the result out where
    `load_dataset(repo)` looks for a cached copy offline (`<owner>___<name>/default/
    0.0.0/<hash>/`, Arrow files named after the dataset)."""
    from datasets import load_dataset

    owner, name = repo.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, rows in splits.items():
            files[split] = str(Path(tmp) / f"{split}.jsonl")
            Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
        load_dataset("json", data_files=files, cache_dir=str(Path(tmp) / "build"))
        [built] = list((Path(tmp) / "build" / "json").glob("*/0.0.0/*/"))
        target = cache / f"{owner}___{name}" / "default" / "0.0.0" / "0"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(built, target)
    for arrow in target.glob("json-*.arrow"):
        arrow.rename(arrow.with_name(arrow.name.replace("json-", f"{name}-", 1)))


def offline_cache(monkeypatch: Any, cache: Path) -> None:
    """Point `datasets` at `cache` with the Hub unreachable (as on a machine without network)."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
