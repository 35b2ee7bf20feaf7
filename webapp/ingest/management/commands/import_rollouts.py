"""`manage.py import_rollouts RUN_ID PATH [--format trl|verl|auto]`: TRL completion Parquet
files or verl rollout JSONL dumps into a run (logic in `webapp.ingest.importers`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.ingest import importers
from webapp.runs.models import Run


class Command(BaseCommand):
    help = ("Import rollouts from TRL completion Parquet files (<output_dir>/completions/) or verl rollout "
            "JSONL dumps (trainer.rollout_data_dir) into a run. Bad rows are named (file:line: field: rule) "
            "and nothing is stored; importing twice stores once.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", type=int)
        parser.add_argument("path", type=Path, help="a file, or a folder of them")
        parser.add_argument("--format", choices=["trl", "verl", "auto"], default="auto")
        parser.add_argument("--reward-columns", default="",
                            help="TRL: comma-separated reward columns (default: the numeric columns but step and advantage)")
        parser.add_argument("--dry-run", action="store_true", help="check the files, store nothing")

    def handle(self, *args: Any, run_id: int, path: Path, format: str, reward_columns: str, dry_run: bool,
               **options: Any) -> None:
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"run_id: no run {run_id}")
        columns = [c.strip() for c in reward_columns.split(",") if c.strip()] or None
        started = time.monotonic()
        try:
            report = importers.rollouts_import(run=run, path=path, fmt=format, reward_columns=columns,
                                               progress=self._progress, dry_run=dry_run)
        except importers.ImportFailed as exc:
            raise CommandError(str(exc)) from None
        verb = "checked (dry run)" if dry_run else f"imported, {report.created} new"
        self.stdout.write(f"{report.rows} rollouts from {report.files} file(s) {verb} into run {run.pk} "
                          f"in {time.monotonic() - started:.1f}s")

    def _progress(self, done: int, total: int, created: int) -> None:
        self.stderr.write(f"import_rollouts: {done}/{total} rows ({100 * done // max(total, 1)}%), {created} new")
