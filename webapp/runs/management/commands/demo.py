"""`make demo`: the demo user, the built-in R1-Zero run on the starter model, the server."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand

from webapp.accounts.services import demo_user_ensure
from webapp.projects.services import personal_project
from webapp.runs.management.commands.serve import start_services, wait_then_stop
from webapp.runs.presets import R1_ZERO_DEMO
from webapp.runs.services import run_create
from webapp.runs.stages import config_class


class Command(BaseCommand):
    help = "Ensure the demo user, launch the R1-Zero demo run, and serve (Ctrl-C stops everything)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("PONDER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PONDER_PORT", "8000")))
        parser.add_argument("--no-run", action="store_true", help="Serve without launching the demo run.")

    def handle(self, *args, host: str, port: int, no_run: bool, **options):
        user, password = demo_user_ensure(username="demo")
        project = personal_project(user=user)
        url = f"http://{host}:{port}/"
        if not no_run and config_class("grpo") is not None:
            run = run_create(project=project, user=user, name="R1-Zero demo (starter model, arithmetic)",
                             stage="grpo", config=dict(R1_ZERO_DEMO))
            url = f"http://{host}:{port}/runs/{run.pk}/"
        children = start_services(host, port)
        self.stdout.write(self.style.SUCCESS(f"\nPonder demo: {url}\n  user: demo\n  password: {password}\n"))
        sys.exit(wait_then_stop(children))
