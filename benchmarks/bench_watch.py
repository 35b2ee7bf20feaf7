"""What watching a run costs its training: GRPO step time with websocket viewers against none.

The offline starter trains R1-Zero style (the demo's settings: 8 prompts x 8 samples, two
completions streamed live) through the worker's database sink, next to a real daphne
server. Runs alternate between no viewer, `--viewers` viewers with frames handed to the
sender thread (what Ponder does), and the same viewers with every frame sent on the
training thread (what it did before: `async_to_sync` per frame). Medians of the step
time over each run's steps after the first two. Target: at most +5% with five viewers.

    .venv/bin/python benchmarks/bench_watch.py [--viewers 5] [--steps 14] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from _scratch import ROOT, owner_with_token, scratch_env, setup_django

sys.path.insert(0, str(ROOT))
from tests import procs  # noqa: E402


class Viewers:
    """`n` websocket clients on one run in a process of their own (so they do not share the
    trainer's interpreter), reading every frame until the trainer is done."""

    def __init__(self, url: str, token: str, n: int) -> None:
        self.url, self.token, self.n = url, token, n
        self.frames = 0

    def __enter__(self) -> Viewers:
        if self.n:
            self.proc = subprocess.Popen([sys.executable, __file__, "--watch", self.url, "--token", self.token,
                                          "--viewers", str(self.n)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the viewers did not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.n:
            out, _ = self.proc.communicate("stop\n", timeout=30)
            self.frames = int(out.strip() or 0)


async def _watch(url: str, token: str, n: int) -> int:
    import websockets

    stop = asyncio.Event()
    counts = [0]
    opened: list[int] = []

    async def client() -> None:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      max_size=None) as ws:
            opened.append(1)
            if len(opened) == n:
                print("ready", flush=True)
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), 0.5)
                    counts[0] += 1
                except TimeoutError:
                    continue

    async def until_stdin_closes() -> None:
        await asyncio.to_thread(sys.stdin.readline)
        stop.set()

    await asyncio.gather(*(client() for _ in range(n)), until_stdin_closes())
    return counts[0]


def timed_sink(inner: Any) -> Any:
    """The sink with the seconds the training thread spends inside it counted."""
    from engine.events import ForwardingSink

    class Timed(ForwardingSink):
        seconds = 0.0

        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if name in ("metrics", "rollouts", "tokens", "progress", "log"):
                def timed(*a: Any, **kw: Any) -> Any:
                    t = time.perf_counter()
                    try:
                        return attr(*a, **kw)
                    finally:
                        Timed.seconds += time.perf_counter() - t
                return timed
            return attr

    Timed.seconds = 0.0
    return Timed(inner)


def train(model: str, out: str, run: Any, steps: int, threads: int) -> tuple[list[float], float]:
    """Step times after the first two, and the sink's seconds per step on the training thread."""
    from engine.config import GRPOConfig
    from engine.grpo import run_grpo
    from webapp import broadcast
    from workers.sink import DbSink

    config = GRPOConfig(model=model, output_dir=out, task="countdown", steps=steps, prompts_per_step=8,
                        group_size=8, max_new_tokens=64, eval_every=0, save_every=0, stream_samples=2,
                        learning_rate=1e-4, seed=3, num_threads=threads)
    inner = DbSink(run)
    sink = timed_sink(inner)
    result = run_grpo(config, sink)
    inner.flush()
    broadcast.flush(10)
    return [h["step_time"] for h in result.history if h.get("step", 0) > 2], type(sink).seconds / steps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--viewers", type=int, default=5)
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for training (1 leaves the other core to the server and the viewers)")
    ap.add_argument("--watch", help=argparse.SUPPRESS)  # the viewers' own process
    ap.add_argument("--token", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.watch:
        print(asyncio.run(_watch(args.watch, args.token, args.viewers)))
        return 0
    env = scratch_env("ponder_bench_watch")
    setup_django(env)
    from engine.starter import ensure_starter
    from webapp import broadcast
    from webapp.runs.models import Run

    model = str(ensure_starter("dense"))
    user, token = owner_with_token()
    out = ROOT / "var" / "bench" / "watch"
    server, url = procs.start_server(env, ROOT / "var" / "bench")
    queued = broadcast._deliver

    from asgiref.sync import async_to_sync

    def before(run_id: int, frames: Any) -> None:  # the old path: ask, build and send on the caller's thread
        if broadcast.watched(run_id):
            built = list(frames() if callable(frames) else frames)
            if built:
                async_to_sync(broadcast._send_all)(run_id, built)

    modes = {"no viewer": (0, queued), f"{args.viewers} viewers, sender thread": (args.viewers, queued),
             f"{args.viewers} viewers, sent on the training thread (before)": (args.viewers, before)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    in_sink: dict[str, list[float]] = {m: [] for m in modes}
    frames: dict[str, int] = dict.fromkeys(modes, 0)
    try:
        names = list(modes)
        for r in range(args.rounds):
            for mode in names[r % 3:] + names[: r % 3]:  # each mode takes its turn first
                n, deliver = modes[mode]
                run = Run.objects.create(project=user.personal_project, name=f"watch {mode} {r}", stage="grpo",
                                         status="running")
                ws = url.replace("http://", "ws://") + f"/ws/runs/{run.pk}/"
                broadcast._deliver = deliver  # type: ignore[assignment]
                with Viewers(ws, token, n) as viewers:
                    steps, sink_s = train(model, str(out / f"{r}-{n}"), run, args.steps, args.threads)
                times[mode] += steps
                in_sink[mode].append(sink_s)
                frames[mode] += viewers.frames
    finally:
        broadcast._deliver = queued  # type: ignore[assignment]
        server.stop()
    base = statistics.median(times["no viewer"])
    print(f"GRPO on the starter, {args.steps} steps x {args.rounds} rounds per mode, {args.threads} torch "
          "thread(s); median step time of steps 3+, and the training thread's time inside the sink per step")
    for mode, values in times.items():
        med = statistics.median(values)
        print(f"  {mode:<58} {med * 1000:7.1f} ms  {med / base - 1:+6.1%}   in sink "
              f"{statistics.median(in_sink[mode]) * 1000:5.1f} ms/step  ({frames[mode]} frames received)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
