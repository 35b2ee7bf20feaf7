"""The quick start on a machine with no PostgreSQL or Redis: embedded servers start."""

import os
import subprocess
import sys

import httpx
import pytest

from tests import procs


@pytest.mark.slow
def test_embedded_services_start_migrate_and_serve(tmp_path):
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    dead = str(procs.free_port())
    env.update(PONDER_DATA_DIR=str(data_dir), PONDER_PG_PROBE=f"127.0.0.1:{dead}",
               PONDER_REDIS_PROBE=f"127.0.0.1:{dead}", DJANGO_SETTINGS_MODULE="webapp.settings")
    found = subprocess.run([sys.executable, "-m", "webapp.localservices", "env"], env=env, cwd=procs.ROOT,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    urls = dict(line.removeprefix("export ").split("=", 1) for line in found.stdout.splitlines())
    assert str(data_dir / "pgdata") in urls["DATABASE_URL"]
    assert not urls["REDIS_URL"].endswith(f":{dead}/0")
    env.update({k: v.strip("'") for k, v in urls.items()})
    server = None
    try:
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], env=env, cwd=procs.ROOT,
                                 capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr
        static = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], env=env,
                                cwd=procs.ROOT, capture_output=True, text=True, timeout=300)
        assert static.returncode == 0, static.stderr
        server, url = procs.start_server(env, tmp_path / "logs")
        login = httpx.get(url + "/accounts/login/", timeout=10)
        assert login.status_code == 200 and 'name="username"' in login.text
        assert httpx.get(url + "/static/vendor/uPlot.iife.min.js", timeout=10).status_code == 200
        import redis

        assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    finally:
        if server:
            server.stop()
        subprocess.run([sys.executable, "-m", "webapp.localservices", "stop"], env=env, cwd=procs.ROOT, timeout=60)
