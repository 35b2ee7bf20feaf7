"""API tokens: made, listed and revoked from the browser; revoked and expired ones refused at
once, on the API and the live feed; `ingest` tokens log external runs and do nothing more."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from tests.conftest import ApiClient
from webapp.accounts.models import ApiToken
from webapp.accounts.services import api_token_create
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, Run

GRPO = {"model": "starter", "task": "arithmetic", "rewards": {"format": 0.5, "task": 1.0}}
TOKEN = re.compile(r"pdr_[A-Za-z0-9_-]{20,}")
REFUSED = "this token's scope (ingest) does not allow"


def create_on_page(client, user, **fields):
    client.force_login(user)
    return client.post("/accounts/tokens/", {"name": "laptop", "scope": "full", "expires_in_days": "", **fields})


@pytest.mark.django_db
class TestThePage:
    def test_it_shows_a_new_token_once_and_keeps_only_its_digest(self, personas, client):
        response = create_on_page(client, personas.owner, name="cluster <b>", scope="ingest", expires_in_days="30")
        assert response.status_code == 200 and response["Cache-Control"] == "no-store"
        raw = TOKEN.search(response.content.decode())[0]
        token = ApiToken.objects.get(user=personas.owner)
        assert token.name == "cluster <b>" and token.scope == "ingest" and token.digest != raw
        assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
        assert ApiClient(Client(), raw).get("/api/v1/runs").status_code == 200

        page = client.get("/accounts/tokens/").content.decode()
        assert raw not in page and not TOKEN.search(page)
        assert token.prefix in page and "cluster &lt;b&gt;" in page and "cluster <b>" not in page  # escaped
        row = page.split(f'id="token-{token.pk}"')[1].split("</tr>")[0]
        assert "ingest" in row and "active" in row and "Revoke" in row

    def test_it_is_only_for_signed_in_users(self, client):
        response = client.get("/accounts/tokens/")
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")

    @pytest.mark.parametrize(
        ("fields", "field", "rule"),
        [
            ({"name": ""}, "name", "This field is required"),
            ({"name": "x" * 101}, "name", "at most 100 characters"),
            ({"scope": "root"}, "scope", "Select a valid choice"),
            ({"expires_in_days": "0"}, "expires_in_days", "greater than or equal to 1"),
            ({"expires_in_days": "400"}, "expires_in_days", "less than or equal to 365"),
            ({"expires_in_days": "soon"}, "expires_in_days", "Enter a whole number"),
        ],
    )
    def test_bad_input_names_the_field(self, personas, client, fields, field, rule):
        response = create_on_page(client, personas.owner, **fields)
        assert response.status_code == 200
        errors = response.content.decode().split(f'id="errors-{field}"')[1].split("</ul>")[0]
        assert rule in errors
        assert not ApiToken.objects.exists() and not TOKEN.search(response.content.decode())

    def test_a_revoked_token_is_refused_at_once(self, personas, client):
        raw = api_token_create(user=personas.owner, name="ci")
        api = ApiClient(Client(), raw)  # no session: the token alone
        assert api.get("/api/v1/runs").status_code == 200
        token = ApiToken.objects.get()
        client.force_login(personas.owner)
        response = client.post(f"/accounts/tokens/{token.pk}/revoke/")
        assert response.status_code == 302
        refused = api.get("/api/v1/runs")
        assert refused.status_code == 401 and "Bearer" in refused.json()["detail"]
        assert api.post("/api/v1/runs", {"name": "x", "stage": "external"}).status_code == 401
        row = client.get("/accounts/tokens/").content.decode().split(f'id="token-{token.pk}"')[1].split("</tr>")[0]
        assert "revoked" in row and "Revoke" not in row
        first = ApiToken.objects.get().revoked_at
        client.post(f"/accounts/tokens/{token.pk}/revoke/")  # twice: still revoked, the first time kept
        assert ApiToken.objects.get().revoked_at == first

    def test_revoking_takes_a_post(self, personas, client):
        api_token_create(user=personas.owner)
        client.force_login(personas.owner)
        assert client.get(f"/accounts/tokens/{ApiToken.objects.get().pk}/revoke/").status_code == 405
        assert ApiToken.objects.get().revoked_at is None

    def test_another_user_neither_sees_nor_revokes_my_token(self, personas, client):
        raw = api_token_create(user=personas.owner, name="alice's laptop")
        token = ApiToken.objects.get()
        client.force_login(personas.teammate)
        assert "alice&#x27;s laptop" not in client.get("/accounts/tokens/").content.decode()
        assert token.prefix not in client.get("/accounts/tokens/").content.decode()
        assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
        assert ApiToken.objects.get().revoked_at is None
        assert ApiClient(Client(), raw).get("/api/v1/runs").status_code == 200

    def test_the_nav_links_to_it(self, personas, client):
        client.force_login(personas.owner)
        assert 'href="/accounts/tokens/"' in client.get("/projects/").content.decode()


@pytest.mark.django_db
class TestLookup:
    def test_an_expired_token_is_refused(self, personas, client):
        raw = api_token_create(user=personas.owner, expires_in_days=1)
        api = ApiClient(client, raw)
        assert api.get("/api/v1/runs").status_code == 200
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        assert api.get("/api/v1/runs").status_code == 401
        client.force_login(personas.owner)
        assert "expired" in client.get("/accounts/tokens/").content.decode()

    def test_an_inactive_users_token_is_refused(self, personas, client):
        raw = api_token_create(user=personas.owner)
        personas.owner.is_active = False
        personas.owner.save()
        assert ApiClient(client, raw).get("/api/v1/runs").status_code == 401

    def test_last_use_is_recorded_at_most_once_a_minute(self, personas, client):
        api = ApiClient(client, api_token_create(user=personas.owner))
        api.get("/api/v1/runs")
        used = ApiToken.objects.get().last_used_at
        assert used is not None
        api.get("/api/v1/runs")
        assert ApiToken.objects.get().last_used_at == used

    def test_the_service_refuses_a_bad_scope_or_expiry(self, personas):
        from django.core.exceptions import ValidationError

        with pytest.raises(ValidationError, match="scope"):
            api_token_create(user=personas.owner, scope="admin")
        with pytest.raises(ValidationError, match="between 1 and 365"):
            api_token_create(user=personas.owner, expires_in_days=0)


@pytest.mark.django_db
class TestScopes:
    def test_an_ingest_token_logs_an_external_run(self, personas, client):
        api = ApiClient(client, api_token_create(user=personas.owner, scope="ingest"))
        created = api.post("/api/v1/runs", {"name": "trl", "stage": "external", "project": "alpha"})
        assert created.status_code == 201, created.content
        run_id = created.json()["id"]
        points = {"points": [{"step": 1, "name": "loss", "value": 0.5}]}
        assert api.post(f"/api/v1/runs/{run_id}/metrics", points).status_code == 201
        rollouts = {"rollouts": [{"step": 1, "prompt": "2+2?", "completion": "4", "rewards": {"math": 1.0}}]}
        assert api.post(f"/api/v1/runs/{run_id}/rollouts", rollouts).json() == {"created": 1}
        assert api.post(f"/api/v1/runs/{run_id}/checkpoints", {"step": 1, "path": "/ckpt/1"}).status_code == 201
        assert api.get(f"/api/v1/runs/{run_id}/rollouts").json()["items"][0]["completion"] == "4"
        assert api.get("/api/v1/runs").json()["items"][0]["id"] == run_id
        finished = api.post(f"/api/v1/runs/{run_id}/finish", {"status": "succeeded"})
        assert finished.status_code == 200 and finished.json()["status"] == "succeeded"
        assert (MetricPoint.objects.filter(run_id=run_id).count(), Rollout.objects.filter(run_id=run_id).count(),
                Checkpoint.objects.filter(run_id=run_id).count()) == (1, 1, 1)

    def test_an_ingest_token_launches_cancels_and_resumes_nothing(self, personas, client):
        api = ApiClient(client, api_token_create(user=personas.owner, scope="ingest"))
        launched = api.post("/api/v1/runs", {"name": "r1", "stage": "grpo", "config": GRPO, "project": "alpha"})
        assert launched.status_code == 403
        assert launched.json()["detail"].startswith(f"{REFUSED} launching grpo runs")
        assert not Run.objects.exists()
        external = Run.objects.create(project=personas.project, name="ext", stage="external", status="running")
        grpo = Run.objects.create(project=personas.project, name="ponder's", stage="grpo", status="running")
        for path in (f"/api/v1/runs/{external.pk}/cancel", f"/api/v1/runs/{grpo.pk}/resume"):
            refused = api.post(path)
            assert refused.status_code == 403 and refused.json()["detail"].startswith(REFUSED), path
        points = {"points": [{"step": 1, "name": "loss", "value": 0.5}]}
        into_grpo = api.post(f"/api/v1/runs/{grpo.pk}/metrics", points)
        assert into_grpo.status_code == 403 and "writing to a grpo run" in into_grpo.json()["detail"]
        assert not MetricPoint.objects.exists()
        assert Run.objects.get(pk=external.pk).status == "running"
        assert api.get(f"/api/v1/runs/{grpo.pk}").status_code == 200  # reads are fine

    def test_an_ingest_token_learns_nothing_of_runs_it_may_not_see(self, personas, client):
        hidden = Run.objects.create(project=personas.other_project, name="beta's", stage="grpo", status="running")
        api = ApiClient(client, api_token_create(user=personas.owner, scope="ingest"))
        points = {"points": [{"step": 1, "name": "loss", "value": 0.5}]}
        assert api.post(f"/api/v1/runs/{hidden.pk}/metrics", points).status_code == 404
        assert api.post("/api/v1/runs/99999999/metrics", points).status_code == 404

    def test_an_ingest_token_still_gets_clear_validation_errors(self, personas, client):
        api = ApiClient(client, api_token_create(user=personas.owner, scope="ingest"))
        assert api.post("/api/v1/runs", raw=b"{nope").status_code == 400
        response = api.post("/api/v1/runs", {"stage": "external"})
        assert response.status_code == 422 and "name" in response.json()["detail"]

    def test_a_full_token_may_launch_and_cancel(self, personas, client):
        api = ApiClient(client, api_token_create(user=personas.owner))
        launched = api.post("/api/v1/runs", {"name": "r1", "stage": "grpo", "config": GRPO, "project": "alpha"})
        assert launched.status_code == 201, launched.content
        cancelled = api.post(f"/api/v1/runs/{launched.json()['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    def test_the_browser_session_is_not_scoped(self, personas, client):
        # The session path (the browser's own pages calling the API) is untouched by scopes.
        client.force_login(personas.owner)
        assert client.get("/api/v1/runs").status_code == 200


@pytest.mark.django_db
class TestCommand:
    def test_create_api_token_still_prints_one_working_full_token(self, personas, client):
        out = io.StringIO()
        call_command("create_api_token", "alice", stdout=out)
        (raw,) = out.getvalue().splitlines()
        token = ApiToken.objects.get()
        assert token.scope == "full" and token.expires_at is None and token.revoked_at is None
        launched = ApiClient(client, raw).post("/api/v1/runs", {"name": "r", "stage": "grpo", "config": GRPO})
        assert launched.status_code == 201, launched.content

    def test_it_takes_a_name_a_scope_and_an_expiry(self, personas):
        out = io.StringIO()
        call_command("create_api_token", "alice", "--name", "trainer", "--scope", "ingest", "--expires-days", "7",
                     stdout=out)
        assert len(out.getvalue().splitlines()) == 1
        token = ApiToken.objects.get()
        assert (token.name, token.scope) == ("trainer", "ingest")
        assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)

    def test_it_refuses_a_bad_expiry_naming_the_option(self, personas):
        with pytest.raises(CommandError, match="--expires-days: must be between 1 and 365"):
            call_command("create_api_token", "alice", "--expires-days", "0", stdout=io.StringIO())
        assert not ApiToken.objects.exists()


# The live feed, over a real daphne server (as in test_websocket.py).

def ws_url(live_url: str, run_id: int) -> str:
    return live_url.replace("http://", "ws://") + f"/ws/runs/{run_id}/"


async def connect_status(live_url: str, run_id: int, token: str) -> int:
    """101 when the socket opened, else the HTTP status it was refused with."""
    import websockets
    from websockets.exceptions import InvalidStatus

    try:
        async with websockets.connect(ws_url(live_url, run_id), additional_headers={"Authorization": f"Bearer {token}"}):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.django_db(transaction=True)
async def test_the_live_feed_refuses_a_revoked_token_at_once(live_url, personas, client):
    from asgiref.sync import sync_to_async

    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    raw = await sync_to_async(api_token_create)(user=personas.owner, scope="ingest")  # both scopes may watch
    assert await connect_status(live_url, run.pk, raw) == 101
    token = await ApiToken.objects.aget()
    await sync_to_async(client.force_login)(personas.owner)
    response = await sync_to_async(client.post)(f"/accounts/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert await connect_status(live_url, run.pk, raw) == 403


@pytest.mark.django_db(transaction=True)
async def test_the_live_feed_refuses_an_expired_token(live_url, personas):
    from asgiref.sync import sync_to_async

    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    raw = await sync_to_async(api_token_create)(user=personas.owner)
    await ApiToken.objects.all().aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    assert await connect_status(live_url, run.pk, raw) == 403


@pytest.mark.django_db(transaction=True)
async def test_an_open_feed_is_closed_once_its_token_is_revoked(live_url, personas):
    import asyncio

    import websockets
    from asgiref.sync import sync_to_async
    from websockets.exceptions import ConnectionClosed

    from webapp.accounts.services import api_token_revoke
    from webapp.wsauth import RECHECK_S, REVOKED_CLOSE_CODE

    run = await Run.objects.acreate(project=personas.project, name="x", stage="external", status="running")
    raw = await sync_to_async(api_token_create)(user=personas.owner)
    async with websockets.connect(ws_url(live_url, run.pk), additional_headers={"Authorization": f"Bearer {raw}"}) as ws:
        await sync_to_async(api_token_revoke)(token=await ApiToken.objects.aget())
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(RECHECK_S * 2 + 5):
                while True:
                    await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == REVOKED_CLOSE_CODE


@pytest.mark.django_db(transaction=True)
def test_the_python_client_logs_a_run_with_an_ingest_token(live_url, personas, tmp_path):
    from tests.client.conftest import FAST  # noqa: I001 (first: it puts client/ on the path if not installed)
    from ponder_client import Run as ClientRun

    raw = api_token_create(user=personas.owner, name="trainer", scope="ingest")
    run = ClientRun.create("elsewhere", project="alpha", base_url=live_url, token=raw, spool_dir=tmp_path, options=FAST)
    run.log_rollouts([{"step": 1, "prompt": "2+2?", "completion": "<think>add</think> 4", "rewards": {"math": 1.0}}])
    run.log_metrics(1, {"loss": 0.5})
    run.log_checkpoint(1, "/ckpt/step-1", {"architecture": "Qwen2ForCausalLM", "parameters": 10})
    report = run.finish(summary={"best": 1.0})
    assert report.ok, report
    row = Run.objects.get(pk=run.id)
    assert (row.stage, row.status) == ("external", "succeeded")
    assert (Rollout.objects.filter(run=row).count(), MetricPoint.objects.filter(run=row).count(),
            Checkpoint.objects.filter(run=row).count()) == (1, 1, 1)


@pytest.mark.django_db
def test_an_empty_post_names_the_missing_name(personas, client):
    client.force_login(personas.owner)
    response = client.post("/accounts/tokens/", {})
    assert 'id="errors-name"' in response.content.decode() and not ApiToken.objects.exists()
