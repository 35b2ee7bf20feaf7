import pytest
from django.urls import reverse

from webapp.runs.models import Checkpoint, Run

pytestmark = pytest.mark.django_db


def test_the_form_shows_every_field_with_help(client, personas):
    client.force_login(personas.owner)
    body = client.get(reverse("run-new") + "?stage=grpo").content.decode()
    for field in ("group_size", "learning_rate", "beta", "loss_type", "rewards", "max_new_tokens"):
        assert f'data-field="{field}"' in body, field
    assert "G: completions sampled per prompt" in body


@pytest.mark.parametrize("stage", ["grpo", "sft", "eval", "rejection", "distill"])
def test_every_field_sits_in_a_named_section_in_reading_order(client, personas, stage):
    import re

    client.force_login(personas.owner)
    body = client.get(reverse("run-new") + f"?stage={stage}").content.decode()
    sections = re.findall(r'data-section="([^"]+)"', body)
    assert sections and "Other" not in sections  # every config field has a home
    order = ["Model", "Data", "Rewards", "Phases", "Algorithm", "Sampling", "Schedule", "Resources"]
    assert sections == [s for s in order if s in sections]
    if stage == "grpo":
        algorithm = body.split('data-section="Algorithm"')[1].split("</fieldset>")[0]
        assert 'data-field="loss_type"' in algorithm and 'data-field="tis_cap"' in algorithm
        assert 'data-field="group_size"' not in algorithm


def test_it_refuses_a_group_of_one_with_the_rule(client, personas):
    client.force_login(personas.owner)
    response = client.post(reverse("run-new"), {"stage": "grpo", "project": "alpha", "name": "bad",
                                                "cfg_group_size": "1", "cfg_task": "arithmetic",
                                                "cfg_rewards": '{"format": 1.0}'})
    assert response.status_code == 200
    assert "group_size must be at least 2: GRPO compares samples within a group" in response.content.decode()
    assert Run.objects.count() == 0


def test_it_launches_a_queued_run(client, personas, django_capture_on_commit_callbacks):
    client.force_login(personas.owner)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("run-new"), {"stage": "grpo", "project": "alpha", "name": "r1-zero",
                                                    "cfg_group_size": "4", "cfg_task": "arithmetic",
                                                    "cfg_rewards": '{"format": 0.5, "task": 1.0}', "cfg_steps": "3"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("run-detail", args=[run.pk])
    assert run.status == "queued" and run.config["group_size"] == 4 and run.config["steps"] == 3
    assert len(callbacks) == 1  # the Celery task is queued only after commit


def test_a_teammate_cannot_launch(client, personas):
    client.force_login(personas.teammate)
    body = client.get(reverse("run-new")).content.decode()
    assert "You own no project yet" in body


def test_restart_from_a_checkpoint_prefills_the_form(client, personas):
    source = Run.objects.create(project=personas.project, name="first", stage="grpo", config={"group_size": 6})
    ckpt = Checkpoint.objects.create(run=source, step=10, path="/tmp/ckpt-10")
    client.force_login(personas.owner)
    body = client.get(reverse("run-new") + f"?checkpoint={ckpt.pk}").content.decode()
    assert f'value="checkpoint:{ckpt.pk}"' in body and 'value="6"' in body


def test_an_outsider_cannot_use_someone_elses_checkpoint(client, personas):
    source = Run.objects.create(project=personas.project, name="first", stage="grpo")
    ckpt = Checkpoint.objects.create(run=source, step=10, path="/tmp/ckpt-10")
    client.force_login(personas.outsider)
    assert client.get(reverse("run-new") + f"?checkpoint={ckpt.pk}").status_code == 404
    response = client.post(reverse("run-new"), {"stage": "grpo", "project": "beta", "name": "steal",
                                                "cfg_model": f"checkpoint:{ckpt.pk}", "cfg_task": "arithmetic",
                                                "cfg_rewards": '{"task": 1.0}'})
    assert "is not a checkpoint you can see" in response.content.decode()
    assert not Run.objects.filter(name="steal").exists()
