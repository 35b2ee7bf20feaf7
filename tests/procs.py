"""Real subprocesses the tests talk to: a Celery worker and a daphne server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(db_name: str, **extra: str) -> dict[str, str]:
    """The environment of a server process that shares the tests' database."""
    env = dict(os.environ)
    url = urlsplit(env.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ponder"))
    env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{db_name}"))
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings.test"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = log_dir / f"{name}-{os.getpid()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before {what}:\n{self.text()[-4000:]}")
            if predicate():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {what} within {timeout}s:\n{self.text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker", queues: str = "cpu,gpu") -> Proc:
    proc = Proc(name, [str(BIN / "celery"), "-A", "workers", "worker", "-Q", queues, "-c", "1",
                       "-n", f"{name}-{os.getpid()}@%h", "--loglevel=INFO", "--without-gossip", "--without-mingle"],
                env, log_dir)
    proc.wait_for(lambda: "ready." in proc.text(), 90, "ready message")
    return proc


def start_server(env: dict[str, str], log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    port = port or free_port()
    proc = Proc("daphne", [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "webapp.asgi:application"],
                env, log_dir)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_for(healthy, 60, "healthy /healthz")
    return proc, url


def start_serve(env: dict[str, str], log_dir: Path, port: int, name: str = "serve") -> Proc:
    """`manage.py serve` (daphne and a worker, as `make serve` runs them), once it answers."""
    proc = Proc(name, [str(BIN / "python"), "manage.py", "serve", "--port", str(port)], env, log_dir)
    url = f"http://127.0.0.1:{port}/healthz"

    def healthy() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_for(healthy, 90, "healthy /healthz")
    return proc
