"""A checkpoint's model summary (engine.models.model_summary, stored on save) for people."""

from __future__ import annotations

from typing import Any

from webapp.runs.models import Checkpoint

# (summary key, label) in the order the page lists them; MoE rows only for MoE models.
BASE_ROWS = [("architecture", "Architecture"), ("model_type", "Model type"), ("hidden_size", "Hidden size"),
             ("vocab_size", "Vocabulary"), ("layers", "Layers"), ("dense_layers", "Dense layers")]
MOE_ROWS = [("moe_layers", "MoE layers"), ("routed_experts", "Routed experts"),
            ("top_k", "Experts per token (top-k)"), ("shared_experts", "Shared experts")]


def human_count(n: int) -> str:
    """12345678 -> "12.3M"."""
    for size, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def checkpoint_model(checkpoint: Checkpoint) -> dict[str, Any]:
    """The headline ("4 layers: 1 dense, 3 MoE, ...") and labelled rows for the page."""
    summary = checkpoint.summary if isinstance(checkpoint.summary, dict) else {}
    parameters = int(summary.get("parameters") or checkpoint.parameter_count or 0)
    rows = [("Architecture", summary.get("architecture") or checkpoint.architecture or "unknown")]
    if parameters:
        rows.append(("Parameters", f"{human_count(parameters)} ({parameters:,})"))
    moe = bool(summary.get("moe_layers"))
    for key, label in BASE_ROWS[1:] + (MOE_ROWS if moe else []):
        if summary.get(key) not in (None, ""):
            rows.append((label, str(summary[key])))
    return {"text": str(summary.get("text") or ""), "rows": rows, "moe": moe}
