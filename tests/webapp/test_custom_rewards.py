"""Reward functions written in the browser: saved per project in versions, tried in the
sandbox, named by runs as custom:<name>@<version> and run by the engine only in the sandbox."""

from pathlib import Path

import pytest
from django.urls import reverse

from webapp.rewards.models import CustomReward
from webapp.rewards.services import reward_save
from webapp.runs import services
from webapp.runs.configs import engine_config
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

SHORT = "def reward(completion, example):\n    return 1.0 if len(completion) < 20 else 0.0\n"


def page(personas):
    return reverse("reward-list", args=[personas.project.slug])


def test_an_owner_tries_then_saves_versions_and_a_run_pins_the_one_it_started_with(client, personas):
    client.force_login(personas.owner)
    tried = client.post(page(personas), {"name": "short", "source": SHORT, "action": "try"}).content.decode()
    assert 'id="tried"' in tried and "1.0000" in tried and "0.0000" in tried
    assert not CustomReward.objects.exists()  # trying saves nothing
    client.post(page(personas), {"name": "short", "source": SHORT, "action": "save"})
    client.post(page(personas), {"name": "short", "source": SHORT.replace("20", "40"), "action": "save"})
    assert list(CustomReward.objects.values_list("version", flat=True).order_by("version")) == [1, 2]
    run = services.run_create(project=personas.project, user=personas.owner, name="custom", stage="grpo",
                              config={"model": "starter", "task": "arithmetic",
                                      "rewards": {"format": 0.5, "custom:short": 1.0}}, queue=False)
    assert run.config["rewards"] == {"format": 0.5, "custom:short@2": 1.0}  # pinned
    reward_save(project=personas.project, user=personas.owner, name="short", source=SHORT)  # v3 comes later
    config = engine_config(run)
    path = Path(config.custom_rewards["custom:short@2"])
    assert path.read_text() == SHORT.replace("20", "40") and path.is_relative_to(Path(config.output_dir))


@pytest.mark.parametrize(("form", "message"), [
    ({"name": "Bad Name", "source": SHORT}, "name: must be 1-40 lowercase"),
    ({"name": "format", "source": SHORT}, "is a built-in reward"),
    ({"name": "ok", "source": "def reward(c, e):\n    return (\n"}, "source: line 2"),
    ({"name": "ok", "source": "def score(c, e):\n    return 1\n"}, "must define a function `reward"),
    ({"name": "ok", "source": ""}, "source: is empty"),
])
def test_bad_source_or_names_are_refused_with_the_field(client, personas, form, message):
    client.force_login(personas.owner)
    body = client.post(page(personas), {**form, "action": "save"}).content.decode()
    assert message.replace("`", "&#x60;") in body or message in body
    assert not CustomReward.objects.exists()


def test_a_try_that_breaks_in_the_sandbox_says_so(client, personas):
    client.force_login(personas.owner)
    body = client.post(page(personas), {"name": "x", "action": "try",
                                        "source": "def reward(c, e):\n    raise KeyError('answer')\n"}).content
    assert b"KeyError" in body


def test_runs_name_only_rewards_of_their_own_project_and_never_files(personas, api_for):
    reward_save(project=personas.project, user=personas.owner, name="short", source=SHORT)
    reward_save(project=personas.other_project, user=personas.outsider, name="theirs", source=SHORT)
    api = api_for(personas.owner)
    base = {"model": "starter", "task": "arithmetic"}
    for rewards, field in [({"custom:theirs": 1.0}, "rewards.custom:theirs"), ({"custom:short@9": 1.0}, "short@9")]:
        refused = api.post("/api/v1/runs", {"name": "x", "stage": "grpo", "project": "alpha",
                                            "config": {**base, "rewards": rewards}})
        assert refused.status_code == 422 and field in refused.json()["detail"], refused.json()
        assert "saved are custom:short@1" in refused.json()["detail"]
    files = api.post("/api/v1/runs", {"name": "x", "stage": "grpo", "project": "alpha",
                                      "config": {**base, "custom_rewards": {"x": "/etc/passwd"}}})
    assert files.status_code == 422 and "custom_rewards" in files.json()["detail"]
    assert not Run.objects.exists()
    ok = api.post("/api/v1/runs", {"name": "x", "stage": "eval", "project": "alpha",
                                   "config": {**base, "accuracy_reward": "custom:short"}})
    assert ok.status_code == 201 and ok.json()["config"]["accuracy_reward"] == "custom:short@1"


def test_teammates_see_rewards_but_only_owners_save_and_outsiders_get_404(client, personas):
    reward_save(project=personas.project, user=personas.owner, name="short", source=SHORT)
    client.force_login(personas.teammate)
    body = client.get(page(personas) + "?edit=short").content.decode()
    assert "custom:short@1" in body and "save-reward" not in body
    assert client.post(page(personas), {"name": "mine", "source": SHORT, "action": "save"}).status_code == 403
    assert CustomReward.objects.count() == 1
    client.force_login(personas.outsider)
    assert client.get(page(personas)).status_code == 404
