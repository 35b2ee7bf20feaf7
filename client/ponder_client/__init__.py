"""Log runs trained elsewhere (TRL, verl, your own loop) into Ponder.

    from ponder_client import Run

    run = Run.create("my GRPO run", config={"lr": 1e-6})  # PONDER_URL, PONDER_TOKEN
    run.log_rollouts([{"step": 1, "prompt": "2+3?", "completion": "<think>...</think> 5",
                       "rewards": {"math": 1.0}}])
    run.log_metrics(1, {"reward/mean": 0.5})
    print(run.finish())
"""

__version__ = "0.1.0"

from ponder_client.errors import (  # noqa: E402
    PonderAPIError,
    PonderError,
    PonderUnavailableError,
    PonderValidationError,
    SpoolLockedError,
)
from ponder_client.run import ClientOptions, FinishReport, Run  # noqa: E402

__all__ = [
    "ClientOptions", "FinishReport", "PonderAPIError", "PonderError", "PonderUnavailableError",
    "PonderValidationError", "Run", "SpoolLockedError", "__version__",
]
