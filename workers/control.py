"""A remote-control command that reports a worker's devices (for the workers page)."""

from __future__ import annotations

from typing import Any

from celery.worker.control import inspect_command


def device_report() -> dict[str, Any]:
    """GPU memory where torch sees CUDA devices; CPU count otherwise. No torch import if absent."""
    import os
    import sys

    report: dict[str, Any] = {"cpus": os.cpu_count() or 0, "gpus": []}
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            return report
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            report["gpus"].append({"index": index, "name": torch.cuda.get_device_name(index),
                                   "memory_used_mb": (total - free) // 2**20, "memory_total_mb": total // 2**20})
    return report


@inspect_command()
def ponder_devices(state: Any) -> dict[str, Any]:
    return device_report()
