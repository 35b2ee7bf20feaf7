"""Ready-made stage configs (the R1 recipe, scaled to the starter model)."""

# R1-Zero on the starter: GRPOConfig's defaults are tuned for this run (learning rate, batch,
# length limit; see docs/benchmarks.md), so the preset names only what it is about: the base
# model, the task and R1-Zero's two rule-based rewards (format and the task's own grader).
R1_ZERO_DEMO: dict = {
    "model": "starter",
    "task": "arithmetic",
    "rewards": {"format": 0.5, "task": 1.0},
}
