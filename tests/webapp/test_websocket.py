"""The live feed over a real daphne server: session-cookie auth, frames after commit."""

import asyncio
import json

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from webapp.accounts.services import api_token_create
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(client, user) -> str:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def ws_url(live_url: str, run_id: int) -> str:
    return live_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/"


async def receive_until(ws, predicate, timeout=10.0):
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if predicate(frames):
                return frames


def rollout_ids(frames):
    ids = []
    for f in frames:
        if f["type"] == "rollout":
            ids.append(f["rollout"]["id"])
        elif f["type"] == "rollouts":
            ids.extend(r["id"] for r in f["rollouts"])
    return ids


async def test_a_member_receives_stored_rollouts_and_metrics(live_url, personas, client):
    run = await Run.objects.acreate(project=personas.project, name="live", stage="external", status="running")
    token = await api_token_create_async(personas.owner)
    cookie = await cookie_async(client, personas.teammate)
    rollouts = [{"step": 3, "prompt": "2+2?", "completion": f"<think>hm</think> {i}", "rewards": {"math": 1.0},
                 "sample_index": i} for i in range(300)]
    async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Cookie": cookie, "Origin": live_url}) as ws:
        async with httpx.AsyncClient(base_url=live_url, headers={"Authorization": f"Bearer {token}"}) as http:
            response = await http.post(f"/api/v1/runs/{run.pk}/rollouts", json={"rollouts": rollouts})
            assert response.status_code == 201
            again = await http.post(f"/api/v1/runs/{run.pk}/rollouts", json={"rollouts": rollouts})
            assert again.json() == {"created": 0}
            await http.post(f"/api/v1/runs/{run.pk}/metrics", json={"points": [{"step": 3, "name": "kl", "value": 0.01}]})
        frames = await receive_until(ws, lambda fs: any(f["type"] == "metrics" for f in fs))
    ids = rollout_ids(frames)
    assert len(ids) == 300 and len(set(ids)) == 300  # every stored rollout announced once, none for the repeat
    first = next(f for f in frames if f["type"] in ("rollout", "rollouts"))
    sample = first["rollouts"][0] if first["type"] == "rollouts" else first["rollout"]
    assert sample["step"] == 3 and sample["rewards"] == {"math": 1.0} and sample["completion"].startswith("<think>")
    metrics = next(f for f in frames if f["type"] == "metrics")
    assert metrics["points"] == [{"step": 3, "name": "kl", "value": 0.01}]


async def test_the_first_frame_is_the_status_as_of_connecting(live_url, personas, client):
    # A page rendered while the run was running, whose feed connects just after the run was
    # cancelled, still learns it ended (the status event itself went out before it joined).
    run = await Run.objects.acreate(project=personas.project, name="ended", stage="grpo", status="cancelled",
                                    current_step=4, total_steps=12)
    cookie = await cookie_async(client, personas.teammate)
    async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Cookie": cookie, "Origin": live_url}) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first == {"type": "status", "status": "cancelled", "shown": "cancelled", "current_step": 4,
                     "total_steps": 12, "error": ""}


async def test_an_outsider_is_refused(live_url, personas, client):
    run = await Run.objects.acreate(project=personas.project, name="secret", stage="external", status="running")
    cookie = await cookie_async(client, personas.outsider)
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Cookie": cookie, "Origin": live_url}):
            pass
    assert info.value.response.status_code == 403


async def test_an_anonymous_client_is_refused(live_url, personas):
    run = await Run.objects.acreate(project=personas.project, name="secret", stage="external", status="running")
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Origin": live_url}):
            pass
    assert info.value.response.status_code == 403


async def test_a_foreign_origin_is_refused(live_url, personas, client):
    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    cookie = await cookie_async(client, personas.owner)
    with pytest.raises(InvalidStatus):
        async with websockets.connect(ws_url(live_url, run.pk),
                                      additional_headers={"Cookie": cookie, "Origin": "http://evil.example"}):
            pass


async def test_a_bogus_bearer_token_does_not_skip_the_origin_check(live_url, personas, client):
    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    cookie = await cookie_async(client, personas.owner)  # a foreign page riding on the session cookie
    with pytest.raises(InvalidStatus):
        async with websockets.connect(ws_url(live_url, run.pk), additional_headers={
                "Cookie": cookie, "Origin": "http://evil.example", "Authorization": "Bearer pdr_not-a-token"}):
            pass


async def api_token_create_async(user):
    from asgiref.sync import sync_to_async

    return await sync_to_async(api_token_create)(user=user)


async def cookie_async(client, user):
    from asgiref.sync import sync_to_async

    return await sync_to_async(session_cookie)(client, user)


async def test_a_script_with_a_bearer_token_needs_no_origin(live_url, personas):
    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    token = await api_token_create_async(personas.teammate)
    async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Authorization": f"Bearer {token}"}):
        pass
    outsider = await api_token_create_async(personas.outsider)
    with pytest.raises(InvalidStatus):
        async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Authorization": f"Bearer {outsider}"}):
            pass


async def test_frames_sent_from_a_worker_thread_arrive_all_and_in_order(live_url, personas):
    """The worker hands frames to a sender thread and goes on: a burst of token frames
    (the trainer's stream) and then its status reach a viewer complete and in order."""
    from asgiref.sync import sync_to_async

    from webapp import broadcast

    run = await Run.objects.acreate(project=personas.project, name="burst", stage="external", status="running")
    token = await api_token_create_async(personas.owner)

    def burst() -> None:
        for i in range(400):
            broadcast.send_now(run.pk, {"type": "tokens", "deltas": [{"stream": "1-0", "step": 1, "text": f"{i} ",
                                                                       "done": False}]})
        broadcast.send_now(run.pk, {"type": "progress", "status": "running", "step": 1, "total": 1, "eta_s": 0})
        assert broadcast.flush(10.0)

    async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await receive_until(ws, lambda fs: fs[0]["type"] == "status")  # subscribed
        await sync_to_async(burst, thread_sensitive=False)()
        frames = await receive_until(ws, lambda fs: fs[-1]["type"] == "progress")
    texts = [f["deltas"][0]["text"] for f in frames if f["type"] == "tokens"]
    assert texts == [f"{i} " for i in range(400)]
