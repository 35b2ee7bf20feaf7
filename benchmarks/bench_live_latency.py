"""Latency from a rollout stored by a worker to its frame at websocket clients.

1,000 rollouts per second (50 every 50 ms, the worker sink's batching) with 20 clients
connected to /ws/runs/{id}/ on a real daphne server. Baseline, measured in the same run:
a bare Redis PUBLISH -> SUBSCRIBE round trip of the same payload size (the floor any
Redis-backed fan-out pays). Target: p95 under 250 ms and nothing dropped.

    .venv/bin/python benchmarks/bench_live_latency.py [--clients 20] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time

from _scratch import ROOT, owner_with_token, scratch_env, setup_django

sys.path.insert(0, str(ROOT))
from tests import procs  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def produce(run, rate: int, seconds: float, batch: int = 50) -> int:
    from webapp.ingest.store import RolloutIn, rollouts_store

    sent, interval, start = 0, batch / rate, time.monotonic()
    step = 0
    while time.monotonic() - start < seconds:
        t = time.time()
        rows = [RolloutIn(step=step, prompt=f"p{sent + i}", completion="<think>" + "x" * 900 + "</think> 1",
                          rewards={"math": 1.0, "format": 1.0}, metadata={"t": t}) for i in range(batch)]
        sent += rollouts_store(run=run, rollouts=rows)
        step += 1
        time.sleep(max(0.0, start + step * interval - time.monotonic()))
    return sent


async def client(url: str, token: str, latencies: list[float], counts: list[int], ready: asyncio.Event, done) -> None:
    import websockets

    try:
        ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)
    finally:
        ready.set()
    async with ws:
        n = 0
        while not done():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except TimeoutError:
                continue
            now = time.time()
            items = frame.get("rollouts") or ([frame["rollout"]] if "rollout" in frame else [])
            for r in items:
                latencies.append(now - r["metadata"]["t"])
            n += len(items)
        counts.append(n)


async def watch(url: str, token: str, n_clients: int, run, rate: int, seconds: float):
    latencies: list[float] = []
    counts: list[int] = []
    stop = threading.Event()
    events = [asyncio.Event() for _ in range(n_clients)]
    tasks = [asyncio.create_task(client(url, token, latencies, counts, e, stop.is_set)) for e in events]
    await asyncio.gather(*(e.wait() for e in events))
    sent = await asyncio.to_thread(produce, run, rate, seconds)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*tasks)
    return sent, latencies, counts


def redis_baseline(redis_url: str, n: int = 400) -> list[float]:
    import redis

    r = redis.Redis.from_url(redis_url)
    pubsub = r.pubsub()
    pubsub.subscribe("bench-latency")
    pubsub.get_message(timeout=1)
    payload = "x" * (50 * 1100)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r.publish("bench-latency", payload)
        while pubsub.get_message(timeout=1) is None:
            pass
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    env = scratch_env("ponder_bench_live")
    setup_django(env)
    from webapp.runs.models import Run

    user, token = owner_with_token()
    run = Run.objects.create(project=user.personal_project, name="latency bench", stage="external", status="running")
    server, url = procs.start_server(env, ROOT / "var" / "bench")
    try:
        ws_url = url.replace("http://", "ws://") + f"/ws/runs/{run.pk}/"
        sent, lat, counts = asyncio.run(watch(ws_url, token, args.clients, run, args.rate, args.seconds))
    finally:
        server.stop()
    base = redis_baseline(env["REDIS_URL"])
    expected = sent * args.clients
    print(f"rollouts stored: {sent} at {args.rate}/s target, {args.clients} clients")
    print(f"frames received: {sum(counts)} of {expected} expected ({expected - sum(counts)} dropped)")
    print(f"store -> websocket latency: median {statistics.median(lat) * 1000:.1f} ms, "
          f"p95 {percentile(lat, 0.95) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms (target p95 < 250 ms)")
    print(f"baseline redis publish->subscribe (same payload): median {statistics.median(base) * 1000:.2f} ms, "
          f"p95 {percentile(base, 0.95) * 1000:.2f} ms")
    print(f"ratio p95 / baseline p95: {percentile(lat, 0.95) / percentile(base, 0.95):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
