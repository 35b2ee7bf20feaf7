"""Ready-made stage configs (the R1 recipe, scaled to the starter model)."""

R1_ZERO_DEMO: dict = {
    "model": "starter",
    "task": "arithmetic",
    "rewards": {"format": 0.5, "math": 1.0},
}
