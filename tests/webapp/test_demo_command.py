"""`make demo`'s last step, `manage.py demo`: a newcomer gets a URL and a password, and the
R1-Zero run on the starter model is live (stepping) moments after it is launched."""

from __future__ import annotations

import re
import signal
import sys
import time

import httpx
import pytest

from tests import procs
from tests.conftest import ARTIFACTS
from webapp.runs.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def log_in(base_url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30)
    client.get("/accounts/login/")
    response = client.post("/accounts/login/", data={
        "username": username, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": f"{base_url}/accounts/login/"})
    assert "/accounts/login/" not in str(response.headers.get("location", "")), "the printed password must work"
    return client


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_demo_serves_and_launches_a_live_r1_zero_run(server_env, starter_model):
    port = procs.free_port()
    demo = procs.Proc("demo", [sys.executable, "manage.py", "demo", "--port", str(port)],
                      {**server_env, "PYTHONUNBUFFERED": "1"}, ARTIFACTS / "logs")
    run = None
    try:
        demo.wait_for(lambda: "R1-Zero run launched" in demo.text(), 120, "the launched run")
        password = re.search(r"password: (\S+)", demo.text()).group(1)
        run = Run.objects.get(pk=int(re.search(r"/runs/(\d+)/", demo.text()).group(1)))
        assert (run.stage, run.config["model"]) == ("grpo", "starter")

        deadline = time.monotonic() + 180
        while run.current_step < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
            run.refresh_from_db()
        assert run.status == "running" and run.current_step >= 1, (run.status, run.error, demo.text()[-3000:])

        base_url = f"http://127.0.0.1:{port}"
        # The run can step (on any worker) before daphne has finished starting on a busy machine.
        demo.wait_for(lambda: _answers(f"{base_url}/healthz"), 120, "the web server answering")
        client = log_in(base_url, "demo", password)
        page = client.get(f"/runs/{run.pk}/")
        client.close()
        assert page.status_code == 200 and "R1-Zero demo" in page.text
    finally:
        if run is not None:  # whichever worker holds it stops at its next step
            Run.objects.filter(pk=run.pk).update(stop_requested=True)
        demo.stop(signal.SIGINT, timeout=40)
    assert demo.popen.returncode == 0, demo.text()[-3000:]
