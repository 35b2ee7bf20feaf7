"""`python -m ponder_client pending|replay`: what spools hold, and sending it.

    python -m ponder_client pending              # runs of $PONDER_URL with unsent records
    python -m ponder_client replay --timeout 300 # attach to each and send them
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ponder_client.errors import PonderError
from ponder_client.run import ClientOptions, Run, default_spool_root, server_key
from ponder_client.spool import iter_records, read_acked


def pending_runs(base_url: str, spool_root: Path) -> dict[int, int]:
    """{run id: unsent records} under this server's spool folder."""
    folder = spool_root / server_key(base_url)
    found = {}
    for run_dir in sorted(folder.iterdir() if folder.is_dir() else []):
        if run_dir.name.isdigit():
            count = sum(1 for _ in iter_records(run_dir, read_acked(run_dir)))
            if count:
                found[int(run_dir.name)] = count
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ponder_client", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["pending", "replay"])
    parser.add_argument("--url", default=os.environ.get("PONDER_URL"), help="server (default $PONDER_URL)")
    parser.add_argument("--token", default=os.environ.get("PONDER_TOKEN"), help="API token (default $PONDER_TOKEN)")
    parser.add_argument("--spool-dir", type=Path, default=default_spool_root())
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run before giving up")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no server: pass --url or set PONDER_URL")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runs = pending_runs(args.url, args.spool_dir)
    if args.command == "pending" or not runs:
        for run_id, count in runs.items():
            print(f"run {run_id}: {count} unsent records")
        print(f"{len(runs)} run(s) with unsent records under {args.spool_dir / server_key(args.url)}")
        return 0
    failed = 0
    for run_id in runs:
        try:
            report = Run.attach(run_id, base_url=args.url, token=args.token, spool_dir=args.spool_dir,
                                options=ClientOptions()).close(timeout_s=args.timeout)
        except PonderError as exc:
            print(f"run {run_id}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(report)
        failed += not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
