"""`make serve`: daphne (HTTP + websockets) and one Celery worker in the foreground."""

from __future__ import annotations

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
    worker = subprocess.Popen([str(BIN / "celery"), "-A", "workers", "worker", "-Q", queues, "-c", "1",
                               "--loglevel=INFO", "-n", f"ponder-{os.getpid()}@%h"])
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
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()


class Command(BaseCommand):
    help = "Run the web server and one Celery worker in the foreground (Ctrl-C stops both)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("PONDER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PONDER_PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options):
        children = start_services(host, port)
        self.stdout.write(f"Ponder is serving at http://{host}:{port}/ (Ctrl-C stops it)")
        sys.exit(wait_then_stop(children))
