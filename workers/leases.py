"""The worker's side of leases (webapp/runs/leases.py): a keeper thread per run that renews
the run's lease while the stage works, and a reaper thread per worker that requeues runs
whose lease lapsed. Both use their own database connection."""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection

from webapp.runs.leases import external_runs_finish_idle, lease_renew, runs_requeue_lapsed

log = logging.getLogger(__name__)


class LeaseKeeper(threading.Thread):
    """Renews the lease of task `task_id` on run `run_id` every quarter lease; `lost` turns
    true once a renewal finds the run gone (requeued or ended): the sink then stops."""

    def __init__(self, run_id: int, task_id: str) -> None:
        super().__init__(name=f"ponder-lease-{run_id}", daemon=True)
        self.run_id, self.task_id = run_id, task_id
        self.lost = False
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(settings.PONDER_LEASE_SECONDS / 4):
                try:
                    if not lease_renew(run_id=self.run_id, task_id=self.task_id):
                        self.lost = True
                        log.warning("run %s: lease lost (requeued or ended elsewhere)", self.run_id)
                        return
                except Exception:  # the database is away: keep trying; the lease may lapse meanwhile
                    log.exception("run %s: could not renew the lease", self.run_id)
                    connection.close()
        finally:
            connection.close()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def start_reaper() -> threading.Thread:
    """Every third of a lease (with jitter, so reapers of many workers spread out), requeue
    the runs whose lease lapsed. Two reapers never requeue a run twice: an UPDATE decides."""

    def loop() -> None:
        while True:
            threading.Event().wait(settings.PONDER_LEASE_SECONDS / 3 * random.uniform(0.8, 1.2))
            try:
                for run_id in runs_requeue_lapsed():
                    log.warning("run %s: lease lapsed, requeued", run_id)
                for run_id in external_runs_finish_idle():
                    log.info("external run %s: idle, marked finished", run_id)
            except Exception:  # the database is away: the next round tries again
                log.exception("the reaper could not look for lapsed leases")
                connection.close()

    thread = threading.Thread(target=loop, name="ponder-reaper", daemon=True)
    thread.start()
    return thread


class HandBack:
    """SIGTERM (a deploy) or SIGINT (Ctrl-C of `make serve`) asks the run in this process to stop at its
    next step boundary, where the stage saves a checkpoint; the worker then hands the run
    back to the queue instead of ending it, and the next worker continues it. Installed for
    the duration of one run, in the process's main thread (where Celery runs a task)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)  # SIGINT: Ctrl-C reaches the whole process group

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Callable[..., Any] | int | None] = {}

    def __enter__(self) -> HandBack:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("%s: the run stops at its next step boundary and goes back to the queue",
                    signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
