import json

import pytest
from django.urls import reverse

from webapp.runs import presets
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


# ---------------------------------------------------------------------------
# Presets, the estimate and defaults scaled to the model
# ---------------------------------------------------------------------------

QWEN_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)


@pytest.fixture
def model_dirs(tmp_path, settings):
    """A folder the operator allowed, holding the config of a Qwen2.5-0.5B-shaped model (a
    config.json is all an estimate reads: no weights)."""
    from transformers import Qwen2Config

    Qwen2Config(**QWEN_05B).save_pretrained(tmp_path / "qwen-0.5b")
    settings.PONDER_MODEL_DIRS = [str(tmp_path)]
    return tmp_path


def estimate(client, lora=None, **fields):
    """The estimate for these settings, sent as the form sends them (LoRA as its fields)."""
    lora_fields = {"cfg_lora_0": "on", "cfg_lora_1": str(lora["r"])} if lora else {}
    response = client.get(reverse("run-estimate"), {"stage": "grpo", **lora_fields,
                                                     **{f"cfg_{k}": v for k, v in fields.items()}})
    assert response.status_code == 200
    return response.json()


def test_a_preset_fills_the_form_and_says_what_is_left_to_choose(client, personas):
    client.force_login(personas.owner)
    body = client.get(reverse("run-new")).content.decode()
    for slug in ("r1-zero-starter", "grpo-qwen-gsm8k", "code-rl-mbpp", "distil-1.5b-to-0.5b"):
        assert f'data-preset="{slug}"' in body
    body = client.get(reverse("run-new") + "?preset=grpo-qwen-gsm8k").content.decode()
    assert 'value="Qwen/Qwen2.5-0.5B"' in body and 'name="stage" value="grpo"' in body
    assert 'value="1e-06"' in body and 'value="1024"' in body
    assert "Still to choose: your GSM8K-layout dataset" in body
    assert client.get(reverse("run-new") + "?preset=nope").status_code == 404


def test_every_preset_is_a_valid_config_once_its_data_is_chosen(tmp_path):
    from webapp.runs.configs import validate_config
    from webapp.runs.presets import PRESETS

    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "1+1?", "answer": "2"}\n')
    for preset in PRESETS:
        config = {**preset.config, **({"dataset": str(data)} if preset.still_to_choose else {})}
        validate_config(preset.stage, config)  # raises naming the field if a preset went stale


def test_a_preset_launches_with_an_allowed_model_and_a_ready_dataset(client, personas, settings):
    from webapp.datasets.models import Dataset

    settings.PONDER_ALLOWED_MODELS = ["Qwen/*"]
    dataset = Dataset.objects.create(project=personas.project, name="gsm8k", status=Dataset.Status.READY,
                                     row_count=10, created_by=personas.owner)
    client.force_login(personas.owner)
    preset = presets.get("grpo-qwen-gsm8k")
    data = {"stage": "grpo", "project": "alpha", "name": "gsm8k r1-zero", "cfg_dataset": f"dataset:{dataset.pk}"}
    for key, value in preset.config.items():  # as the prefilled form posts them
        if value not in (None, False):
            data[f"cfg_{key}"] = json.dumps(value) if isinstance(value, dict | list) else "on" if value is True else value
    response = client.post(reverse("run-new"), data)
    assert response.status_code == 302, response.context["form"].errors
    run = Run.objects.get(name="gsm8k r1-zero")
    assert run.config["model"] == "Qwen/Qwen2.5-0.5B" and run.config["learning_rate"] == 1e-6
    assert run.config["gradient_checkpointing"] is True and run.config["dataset"] == f"dataset:{dataset.pk}"


def test_the_estimate_counts_the_models_memory_and_scales_its_defaults(client, personas, model_dirs):
    client.force_login(personas.owner)
    model = str(model_dirs / "qwen-0.5b")
    full = estimate(client, model=model, beta="0.04", max_new_tokens="1024")
    assert "494M parameters (Qwen2ForCausalLM), all trainable." in full["lines"]
    assert any(line.startswith("Memory on the device: about") and "reference" in line for line in full["lines"])
    assert full["defaults"]["learning_rate"] == {"value": 1e-6, "why": "494M parameters, full fine-tune",
                                                 "stage_default": 2e-4}
    assert full["defaults"]["max_new_tokens"]["value"] == 256  # arithmetic: short reasoning
    lora = estimate(client, model=model, beta="0.04", max_new_tokens="1024", lora={"r": 16})
    assert lora["defaults"]["learning_rate"]["value"] == 1e-5
    assert "The KL reference is the policy with its adapter off: no second copy." in lora["lines"]
    assert lora["total_memory"] < full["total_memory"]
    checkpointed = estimate(client, model=model, beta="0.04", max_new_tokens="1024", gradient_checkpointing="on")
    assert checkpointed["total_memory"] < full["total_memory"]
    starter = estimate(client)  # the starter keeps its own tuned defaults
    assert starter["defaults"]["learning_rate"]["value"] == 2e-4 and starter["defaults"]["max_new_tokens"]["value"] == 64


def test_the_estimate_checks_who_asks_and_what_they_name(client, personas, settings):
    source = Run.objects.create(project=personas.project, name="first", stage="grpo")
    ckpt = Checkpoint.objects.create(run=source, step=10, path="/tmp/ckpt-10")
    assert client.get(reverse("run-estimate"), {"stage": "grpo"}).status_code == 302  # to the login page
    client.force_login(personas.outsider)
    assert "is not a checkpoint you can see" in estimate(client, model=f"checkpoint:{ckpt.pk}")["error"]
    assert "is not a model you may use" in estimate(client, model="meta-llama/Llama-3.1-8B")["error"]
    settings.PONDER_ALLOWED_MODELS = ["meta-llama/*"]
    assert "its config is not on this machine" in estimate(client, model="meta-llama/Llama-3.1-8B")["error"]


def test_lora_is_set_with_fields_and_reaches_the_run_as_the_engine_reads_it(client, personas,
                                                                            django_capture_on_commit_callbacks):
    client.force_login(personas.owner)
    base = {"stage": "grpo", "project": "alpha", "cfg_task": "arithmetic", "cfg_rewards": '{"format": 0.5, "task": 1.0}'}
    with django_capture_on_commit_callbacks(execute=False):
        client.post(reverse("run-new"), {**base, "name": "full"})
        client.post(reverse("run-new"), {**base, "name": "lora", "cfg_lora_0": "on", "cfg_lora_1": "8",
                                         "cfg_lora_2": "16", "cfg_lora_3": "0.05", "cfg_lora_4": "q_proj, v_proj"})
    assert Run.objects.get(name="full").config.get("lora") is None
    assert Run.objects.get(name="lora").config["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05,
                                                           "target_modules": ["q_proj", "v_proj"]}
    clone = client.get(reverse("run-new") + f"?clone={Run.objects.get(name='lora').pk}").content.decode()
    assert 'name="cfg_lora_0" id="id_cfg_lora_0" checked' in clone and 'value="q_proj, v_proj"' in clone
    bad = client.post(reverse("run-new"), {**base, "name": "bad", "cfg_lora_0": "on", "cfg_lora_1": "0"})
    assert bad.status_code == 200 and "greater than or equal to 1" in bad.content.decode()
    assert not Run.objects.filter(name="bad").exists()


def test_settings_download_as_yaml_and_load_back_into_the_form(client, personas):
    import yaml
    from django.core.files.uploadedfile import SimpleUploadedFile

    source = Run.objects.create(project=personas.project, name="first", stage="grpo",
                                config={"group_size": 6, "rewards": {"format": 0.5, "task": 1.0}, "beta": 0.04})
    client.force_login(personas.teammate)  # a viewer of the run may take its settings
    response = client.get(reverse("run-config-yaml", args=[source.pk]))
    assert response["Content-Disposition"] == f'attachment; filename="run-{source.pk}-grpo.yaml"'
    text = response.content.decode()
    assert text.startswith(f"# Run #{source.pk} 'first' (grpo)") and yaml.safe_load(text) == source.config
    client.force_login(personas.owner)
    page = client.post(reverse("run-new") + "?stage=grpo",
                       {"config_file": SimpleUploadedFile("mine.yaml", text.encode())}).content.decode()
    assert 'id="loaded-from">loaded mine.yaml' in page and 'value="6"' in page and 'value="0.04"' in page
    assert not Run.objects.exclude(pk=source.pk).exists()  # loading fills the form; it launches nothing
    bad = client.post(reverse("run-new") + "?stage=grpo",
                      {"config_file": SimpleUploadedFile("x.yaml", b"group_size: 4\nlearning_rat: 1e-3\n")})
    assert bad.status_code == 400 and "x.yaml: learning_rat is not grpo settings; valid are" in bad.content.decode()
    broken = client.post(reverse("run-new") + "?stage=grpo", {"config_file": SimpleUploadedFile("y.yaml", b"[1, 2")})
    assert broken.status_code == 400 and "y.yaml: not YAML or JSON" in broken.content.decode()
    client.force_login(personas.outsider)
    assert client.get(reverse("run-config-yaml", args=[source.pk])).status_code == 404


def test_the_estimate_says_the_engines_rule_the_settings_break_as_they_stand(client, personas):
    client.force_login(personas.owner)
    bad = estimate(client, group_size="1", task="arithmetic")
    assert bad["problem"] == {"field": "group_size",
                              "message": "group_size must be at least 2: GRPO compares samples within a group."}
    assert estimate(client, group_size="4", task="arithmetic")["problem"] is None
