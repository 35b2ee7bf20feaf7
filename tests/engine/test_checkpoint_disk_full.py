"""A full disk during a save fails with a sentence and leaves the earlier checkpoint intact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A real tmpfs of 1.5 checkpoints' size (mounting needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_checkpoint_that_does_not_fit_fails_clearly_and_keeps_the_previous(tiny_model_and_tokenizer, small_disk,
                                                                              tmp_path):
    import torch

    from engine.checkpoint import DiskFull, load_checkpoint, save_checkpoint

    model, tokenizer = tiny_model_and_tokenizer
    optimizer = torch.optim.AdamW(model.parameters())
    probe = save_checkpoint(tmp_path / "probe", model, tokenizer, step=1, optimizer=optimizer)
    size = sum(f.stat().st_size for f in Path(probe.path).rglob("*") if f.is_file())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.5) // 4096 * 4096}", "tmpfs",
                              str(small_disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    save_checkpoint(small_disk / "checkpoint-1", model, tokenizer, step=1, optimizer=optimizer)
    with pytest.raises(DiskFull, match="checkpoint at step 2: no space left .* the earlier ones are intact"):
        save_checkpoint(small_disk / "checkpoint-2", model, tokenizer, step=2, optimizer=optimizer)
    assert sorted(p.name for p in small_disk.iterdir()) == ["checkpoint-1"]  # nothing half written left
    _, _, state = load_checkpoint(small_disk / "checkpoint-1")
    assert state.step == 1
