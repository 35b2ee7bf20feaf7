import pytest

from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def test_it_requires_a_token(api_for):
    response = api_for(None).get("/api/v1/runs")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_it_refuses_a_wrong_token(client):
    response = client.get("/api/v1/runs", headers={"Authorization": "Bearer pdr_nope"})
    assert response.status_code == 401


def test_it_creates_an_external_run_in_the_default_project(personas, api_for):
    response = api_for(personas.owner).post("/api/v1/runs", {"name": "trl run", "stage": "external", "config": {"lr": 1e-6}})
    assert response.status_code == 201, response.content
    body = response.json()
    assert isinstance(body["id"], int)
    assert body["status"] == "running"  # external runs are never queued
    run = Run.objects.get(pk=body["id"])
    assert run.project.personal_for == personas.owner
    assert run.config == {"lr": 1e-6}
    assert run.celery_task_id == ""


def test_it_creates_a_run_in_a_named_project(personas, api_for):
    response = api_for(personas.owner).post("/api/v1/runs", {"name": "x", "stage": "external", "project": "alpha"})
    assert response.status_code == 201
    assert response.json()["project"] == "alpha"


def test_a_teammate_may_not_launch_but_may_read(personas, api_for):
    run = Run.objects.create(project=personas.project, name="r", stage="external", status="running")
    teammate = api_for(personas.teammate)
    assert teammate.post("/api/v1/runs", {"name": "x", "stage": "external", "project": "alpha"}).status_code == 403
    assert teammate.get(f"/api/v1/runs/{run.pk}").json()["name"] == "r"


def test_an_outsider_sees_nothing(personas, api_for):
    run = Run.objects.create(project=personas.project, name="secret", stage="external", status="running")
    outsider = api_for(personas.outsider)
    assert outsider.get(f"/api/v1/runs/{run.pk}").status_code == 404
    assert outsider.get("/api/v1/runs").json()["items"] == []
    response = outsider.post("/api/v1/runs", {"name": "x", "stage": "external", "project": "alpha"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"name": "x", "stage": "banana"}, "stage", "must be one of"),
        ({"name": "", "stage": "external"}, "name", "at least 1 character"),
        ({"stage": "external"}, "name", "Field required"),
        ({"name": "x", "stage": "external", "config": [1, 2]}, "config", "dictionary"),
        ({"name": 5, "stage": "external"}, "name", "string"),
    ],
)
def test_it_names_the_field_and_rule_of_a_bad_run(personas, api_for, body, field, rule):
    response = api_for(personas.owner).post("/api/v1/runs", body)
    assert response.status_code in (400, 422)
    detail = response.json()["detail"]
    assert field in detail and rule in detail, detail
    assert Run.objects.count() == 0


def test_it_lists_runs_newest_first_with_a_cursor(personas, api_for):
    api = api_for(personas.owner)
    ids = [api.post("/api/v1/runs", {"name": f"r{i}", "stage": "external"}).json()["id"] for i in range(5)]
    first = api.get("/api/v1/runs", limit=3).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:3]
    assert set(first["items"][0]) >= {"id", "name", "stage", "status"}
    second = api.get("/api/v1/runs", limit=3, cursor=first["next"]).json()
    assert [r["id"] for r in second["items"]] == ids[::-1][3:]
    assert second["next"] is None


def test_a_bad_cursor_is_a_clear_400(personas, api_for):
    response = api_for(personas.owner).get("/api/v1/runs", cursor="garbage!")
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_an_external_run_can_be_finished(personas, api_for):
    api = api_for(personas.owner)
    run_id = api.post("/api/v1/runs", {"name": "x", "stage": "external"}).json()["id"]
    response = api.post(f"/api/v1/runs/{run_id}/finish", {"status": "succeeded", "summary": {"acc": 0.7}})
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert Run.objects.get(pk=run_id).finished_at is not None


def test_the_openapi_schema_is_served(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/runs" in paths and "/api/v1/runs/{run_id}/rollouts" in paths


def test_an_external_run_ends_by_cancel_or_when_it_goes_quiet(personas, api_for, settings):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.runs.leases import external_runs_finish_idle

    api = api_for(personas.owner)
    cancelled = api.post("/api/v1/runs", {"name": "to cancel", "stage": "external"}).json()["id"]
    assert api.post(f"/api/v1/runs/{cancelled}/cancel").json()["status"] == "cancelled"  # at once, visibly
    quiet = api.post("/api/v1/runs", {"name": "gone quiet", "stage": "external"}).json()["id"]
    talking = api.post("/api/v1/runs", {"name": "still logging", "stage": "external"}).json()["id"]
    long_ago = timezone.now() - timedelta(seconds=settings.PONDER_EXTERNAL_IDLE_SECONDS + 60)
    Run.objects.filter(pk__in=[quiet, talking]).update(heartbeat_at=long_ago, started_at=long_ago)
    body = {"points": [{"step": 1, "name": "loss", "value": 0.5}]}
    assert api.post(f"/api/v1/runs/{talking}/metrics", body).status_code == 201  # logging keeps it alive
    assert external_runs_finish_idle() == [quiet]
    statuses = dict(Run.objects.filter(pk__in=[quiet, talking]).values_list("pk", "status"))
    assert statuses == {quiet: "succeeded", talking: "running"}
