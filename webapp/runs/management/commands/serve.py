"""`make serve`: daphne (HTTP + websockets) and one Celery worker in the foreground."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

BIN = Path(sys.executable).parent


def start_services(host: str, port: int) -> list[subprocess.Popen]:
    web = subprocess.Popen([str(BIN / "daphne"), "-b", host, "-p", str(port), "webapp.asgi:application"])
    queues = ",".join(dict.fromkeys(settings.PONDER_QUEUES.values()))  # as PONDER_GPU_QUEUE / _CPU_QUEUE name them
    # The worker's name outlives the process (one serve per port): a serve started again after
    # a crash finds the runs its predecessor held and requeues them at once, not after a lease.
    worker = subprocess.Popen([str(BIN / "celery"), "-A", "workers", "worker", "-Q", queues, "-c", "1",
                               "--loglevel=INFO", "-n", f"ponder-{port}@%h"])
    return [web, worker]


def wait_then_stop(children: list[subprocess.Popen]) -> int:
    """Block until Ctrl-C or a child dies, then stop them all."""
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.3)
    stop_all(children)
    return 0 if stopping else 1


def stop_all(children: list[subprocess.Popen]) -> None:
    """SIGTERM to each child and to the worker's pool processes too: a run stops at its next
    step boundary, saves, and goes back to the queue (Celery's warm shutdown alone would wait
    for the whole run). A step may take a while at real sizes: `PONDER_STOP_SECONDS`."""
    for child in children:
        for pid in [child.pid, *_descendants(child.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + float(os.environ.get("PONDER_STOP_SECONDS", "120"))
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for pid in [*_descendants(child.pid), child.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            child.wait()


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (Linux /proc; none elsewhere)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [d for c in children for d in (c, *_descendants(c))]


class Command(BaseCommand):
    help = "Run the web server and one Celery worker in the foreground (Ctrl-C stops both)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("PONDER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PONDER_PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options):
        children = start_services(host, port)
        self.stdout.write(f"Ponder is serving at http://{host}:{port}/ (Ctrl-C stops it)")
        sys.exit(wait_then_stop(children))
