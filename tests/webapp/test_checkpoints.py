"""The checkpoint page: what the model is, where it came from, and what to do with it next."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse

from webapp.projects.models import Role
from webapp.projects.services import member_add
from webapp.runs.models import Checkpoint, Run

pytestmark = pytest.mark.django_db

# engine.models.model_summary() of the starter MoE model, as DbSink stores it.
MOE_SUMMARY = {
    "architecture": "DeepseekV3ForCausalLM", "model_type": "deepseek_v3", "parameters": 748768, "hidden_size": 96,
    "vocab_size": 512, "layers": 4, "dense_layers": 1, "moe_layers": 3, "routed_experts": 8, "top_k": 2,
    "shared_experts": 1, "text": "4 layers: 1 dense, 3 MoE, 8 routed experts, top-2, 1 shared",
}


@pytest.fixture
def ckpt(personas) -> Checkpoint:
    run = Run.objects.create(project=personas.project, name="moe-grpo", stage="grpo", status="succeeded",
                             total_steps=200, launched_by=personas.owner)
    return Checkpoint.objects.create(run=run, step=100, path="/data/runs/1/checkpoint-100", summary=MOE_SUMMARY,
                                     architecture="DeepseekV3ForCausalLM", parameter_count=748768)


@pytest.fixture
def viewer(personas):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("vera", password="vera-pass-123")
    member_add(project=personas.project, user=user, role=Role.VIEWER)
    return user


def page(client, ckpt) -> str:
    response = client.get(reverse("checkpoint-detail", args=[ckpt.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_members_the_model_summary_readably(client, personas, viewer, ckpt):
    for user in (personas.owner, personas.teammate, viewer):
        client.force_login(user)
        body = page(client, ckpt)
        assert "4 layers: 1 dense, 3 MoE, 8 routed experts, top-2, 1 shared" in body
        assert "DeepseekV3ForCausalLM" in body and "749K (748,768)" in body
        assert "Experts per token (top-k)" in body and "/data/runs/1/checkpoint-100" in body
        assert "moe-grpo" in body and "step 100" in body


def test_it_is_404_for_outsiders_and_login_for_visitors(client, personas, ckpt):
    url = reverse("checkpoint-detail", args=[ckpt.pk])
    assert client.get(url)["Location"].startswith("/accounts/login/")
    client.force_login(personas.outsider)
    assert client.get(url).status_code == 404
    assert client.get(reverse("checkpoint-detail", args=[987654])).status_code == 404


def test_a_dense_model_has_no_moe_rows(client, personas, ckpt):
    ckpt.summary = {"architecture": "LlamaForCausalLM", "parameters": 700000, "layers": 2, "dense_layers": 2,
                    "moe_layers": 0, "routed_experts": 0, "top_k": 0, "shared_experts": 0, "text": "2 layers, dense"}
    ckpt.save()
    client.force_login(personas.owner)
    body = page(client, ckpt)
    assert "2 layers, dense" in body and "Routed experts" not in body


def test_its_buttons_open_the_launch_form_with_this_checkpoint(client, personas, ckpt):
    client.force_login(personas.owner)
    body = page(client, ckpt)
    evaluate = f"/runs/new/?stage=eval&amp;checkpoint={ckpt.pk}"
    carry_on = f"/runs/new/?stage=grpo&amp;checkpoint={ckpt.pk}"
    assert evaluate in body and carry_on in body
    for link in (evaluate, carry_on):
        form = client.get(link.replace("&amp;", "&"))
        assert form.status_code == 200
        assert f'value="checkpoint:{ckpt.pk}"' in form.content.decode()
    assert 'value="eval"' in client.get(evaluate.replace("&amp;", "&")).content.decode()


def test_compare_links_here_once_the_comparison_page_exists(client, personas, ckpt):
    client.force_login(personas.owner)
    body = page(client, ckpt)
    try:
        url = reverse("compare-new")
    except NoReverseMatch:
        assert 'id="compare"' not in body
    else:
        assert f"{url}?checkpoints={ckpt.pk}" in body


def test_runs_started_from_it_are_listed_with_their_results(client, personas, ckpt):
    Run.objects.create(project=personas.project, name="eval of 100", stage="eval", status="succeeded",
                       base_checkpoint=ckpt, summary={"eval/accuracy": 0.625})
    Run.objects.create(project=personas.other_project, name="hidden eval", stage="eval", base_checkpoint=ckpt)
    client.force_login(personas.owner)
    body = page(client, ckpt)
    assert "eval of 100" in body and "eval/accuracy 0.625" in body and "hidden eval" not in body


def test_the_run_page_and_the_runs_list_link_to_checkpoints(client, personas, ckpt):
    later = Checkpoint.objects.create(run=ckpt.run, step=200, path="/data/runs/1/checkpoint-200", summary=MOE_SUMMARY)
    client.force_login(personas.teammate)
    run_page = client.get(reverse("run-detail", args=[ckpt.run_id])).content.decode()
    for c in (ckpt, later):
        assert reverse("checkpoint-detail", args=[c.pk]) in run_page
    runs_list = client.get(reverse("run-list")).content.decode()
    assert reverse("checkpoint-detail", args=[later.pk]) in runs_list and "step 200" in runs_list


def test_names_and_paths_are_escaped(client, personas, ckpt):
    Run.objects.filter(pk=ckpt.run_id).update(name="<script>alert(1)</script>")
    Checkpoint.objects.filter(pk=ckpt.pk).update(path="<img src=x onerror=alert(1)>")
    client.force_login(personas.owner)
    body = page(client, ckpt)
    assert "<script>alert(1)" not in body and "<img src=x" not in body and "&lt;img src=x" in body


def test_its_query_count_does_not_grow_with_derived_runs(client, personas, ckpt):
    client.force_login(personas.owner)
    page(client, ckpt)  # warm the session
    counts = []
    for n in (1, 20):
        for i in range(n):
            Run.objects.create(project=personas.project, name=f"eval {n}-{i}", stage="eval", base_checkpoint=ckpt)
        with CaptureQueriesContext(connection) as queries:
            page(client, ckpt)
        counts.append(len(queries))
    assert counts[0] == counts[1] == 4, counts  # session, user, checkpoint with run and project, derived runs
