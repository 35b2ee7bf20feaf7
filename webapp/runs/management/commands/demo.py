"""`make demo`: the demo user, the built-in R1-Zero run on the starter model, the server."""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand

from webapp.accounts.services import demo_user_ensure
from webapp.projects.services import personal_project
from webapp.runs.management.commands.serve import start_services, stop_all, wait_then_stop
from webapp.runs.pipelines import R1_ZERO_DEMO
from webapp.runs.services import run_create


class Command(BaseCommand):
    help = "Ensure the demo user, launch the R1-Zero demo run, and serve (Ctrl-C stops everything)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("PONDER_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PONDER_PORT", "8000")))
        parser.add_argument("--no-run", action="store_true", help="Serve without launching the demo run.")

    def handle(self, *args, host: str, port: int, no_run: bool, **options):
        user, password = demo_user_ensure(username="demo")
        project = personal_project(user=user)
        children = start_services(host, port)
        self.stdout.write(self.style.SUCCESS(f"\nPonder is up: http://{host}:{port}/\n  user: demo\n"
                                             f"  password: {password}\n"))
        try:
            if not no_run:
                # Built here, in the setup, so the R1-Zero run is live as soon as it is launched
                # (the worker would build it too, but then the run's first minutes are pretraining).
                self._ensure_starter()
                run = run_create(project=project, user=user, name="R1-Zero demo (starter model, arithmetic)",
                                 stage="grpo", config=dict(R1_ZERO_DEMO))
                self.stdout.write(self.style.SUCCESS(f"R1-Zero run launched: http://{host}:{port}/runs/{run.pk}/"))
        except KeyboardInterrupt:
            stop_all(children)
            sys.exit(0)
        sys.exit(wait_then_stop(children))

    def _ensure_starter(self) -> None:
        from engine.events import NullSink
        from engine.pretrain import progress_reporter
        from engine.starter import ensure_starter

        class Terminal(NullSink):
            def log(sink, line: str) -> None:  # noqa: N805 - `self` is the command
                self.stdout.write(f"  {line} (once)")

        ensure_starter(R1_ZERO_DEMO["model"], progress=progress_reporter(Terminal(), R1_ZERO_DEMO["model"]))
