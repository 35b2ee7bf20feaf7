"""What the launch page needs: the stage's form, the caller's projects, models and datasets."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, QueryDict

from webapp.datasets.models import Dataset
from webapp.projects.models import Membership, Role
from webapp.projects.selectors import AuthUser, User, projects_for
from webapp.runs import presets, services, stages
from webapp.runs.forms import LaunchForm, config_fields
from webapp.runs.models import Checkpoint, Run
from webapp.runs.selectors import run_for

DEFAULT_STAGE = "grpo"
STARTER_MODELS = [("starter", "Starter base model (dense, offline)"), ("starter-moe", "Starter MoE (DeepSeek-V3 style)")]


def owned_projects(user: AuthUser) -> list[Any]:
    ids = Membership.objects.filter(user=user, role=Role.OWNER).values("project_id")
    return list(projects_for(user).filter(pk__in=ids).order_by("name"))


def model_choices(user: User) -> list[tuple[str, str]]:
    checkpoints = (Checkpoint.objects.filter(run__project__in=projects_for(user))
                   .select_related("run").order_by("-created_at")[:200])
    return STARTER_MODELS + [(f"checkpoint:{c.pk}", f"{c.run.name} (#{c.run_id}) @ step {c.step}") for c in checkpoints]


def dataset_choices(user: User) -> list[tuple[str, str]]:
    datasets = Dataset.objects.filter(project__in=projects_for(user), status=Dataset.Status.READY
                                      ).order_by("-created_at")[:200]
    return [(f"dataset:{d.pk}", f"{d.name} v{d.version} ({d.row_count} rows)") for d in datasets]


def _prefill(user: User, params: QueryDict) -> tuple[str | None, dict[str, Any], str]:
    """(stage, config, name) from ?clone=, ?preset= or ?checkpoint=, else defaults."""
    # params[key] is the key's last value, a str (the stubs also allow a list)
    if params.get("clone"):
        source = run_for(user, _int(cast(str, params["clone"])))
        return source.stage, dict(source.config), f"{source.name} (clone)"
    if params.get("preset"):
        preset = presets.get(cast(str, params["preset"]))
        if preset is None:
            raise Http404("No such preset.")
        return preset.stage, dict(preset.config), preset.title
    if params.get("checkpoint"):
        ckpt = Checkpoint.objects.filter(run__project__in=projects_for(user),
                                         pk=_int(cast(str, params["checkpoint"]))).first()
        if ckpt is None:
            raise Http404("No such checkpoint.")
        config = {**ckpt.run.config, "model": f"checkpoint:{ckpt.pk}"}
        return ckpt.run.stage, config, f"{ckpt.run.name} from step {ckpt.step}"
    return None, {}, ""


MAX_CONFIG_FILE_BYTES = 256 * 1024


def config_from_file(upload: Any, stage: str) -> dict[str, Any]:
    """The settings in an uploaded YAML or JSON file (what `python -m engine <stage> --config`
    reads and `config.yaml` downloads), as the launch form's initial values; ValidationError
    naming the file's problem, or the unknown keys with the stage's valid ones."""
    import yaml

    spec = stages.spec(stage)
    if spec is None:
        raise ValidationError({"config_file": f"no stage {stage!r}"})
    if upload is None or upload.size > MAX_CONFIG_FILE_BYTES:
        raise ValidationError({"config_file": f"choose a YAML or JSON file of at most {MAX_CONFIG_FILE_BYTES // 1024} KB"})
    try:
        data = yaml.safe_load(upload.read().decode("utf-8"))  # JSON is YAML too
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValidationError({"config_file": f"{upload.name}: not YAML or JSON ({str(exc).splitlines()[0]})"}) from None
    if not isinstance(data, dict):
        raise ValidationError({"config_file": f"{upload.name}: must hold a mapping of settings, not {type(data).__name__}"})
    known = {f.name for f in config_fields(spec.config)}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise ValidationError({"config_file": f"{upload.name}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                                              f"not {stage} settings; valid are {', '.join(sorted(known))}"})
    return {str(k): v for k, v in data.items()}


def config_yaml(run: Run) -> str:
    """The run's settings as a YAML file for the engine's command line (and for loading into
    the launch form again)."""
    import yaml

    head = (f"# Run #{run.pk} {run.name!r} ({run.stage}), from Ponder.\n"
            f"# python -m engine {run.stage} --config <this file> --output-dir <folder>\n"
            "# checkpoint:<id> and dataset:<id> name Ponder's own; on the command line use paths.\n")
    return head + yaml.safe_dump(dict(run.config), sort_keys=True, allow_unicode=True)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Http404("Not a number.") from None


def launch_context(user: AuthUser, params: QueryDict, loaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """The launch page's form and choices; `loaded` is a settings file's content (its values
    prefill the form, over the stage's defaults)."""
    stage, initial_config, name = _prefill(user, params)
    if loaded is not None:
        initial_config = dict(loaded)
    if "name" not in params:  # links such as "launch SFT from this dataset" prefill ?cfg_<field>=value
        initial_config.update({k[4:]: v for k, v in params.items() if k.startswith("cfg_")})
    stage = params.get("stage") or stage or DEFAULT_STAGE
    spec = stages.spec(stage)
    if spec is None:
        raise Http404("No such stage.")
    projects = owned_projects(user)
    data = params if "name" in params else None
    form = LaunchForm(data, config_cls=spec.config, initial_config=initial_config, initial={"name": name},
                      model_choices=model_choices(user), dataset_choices=dataset_choices(user))
    return {"stage": stage, "stages": stages.launchable(), "form": form, "presets": presets.PRESETS,
            "preset": presets.get(cast(str, params.get("preset") or "")),
            "projects": projects, "project": params.get("project") or (projects[0].slug if projects else "")}


def launch_from_form(user: AuthUser, form: LaunchForm | None, ctx: dict[str, Any]) -> Run | None:
    if form is None or not form.is_valid():
        return None
    project = next((p for p in ctx["projects"] if p.slug == ctx["project"]), None)
    if project is None:
        form.add_error(None, "Choose a project you own.")
        return None
    try:
        return services.run_create(project=project, user=user, name=form.cleaned_data["name"],
                                   stage=ctx["stage"], config=form.config())
    except ValidationError as exc:
        for field, messages in exc.message_dict.items():
            for message in messages:
                form.add_config_error(message) if field == "config" else form.add_error(None, f"{field}: {message}")
    except PermissionDenied as exc:
        form.add_error(None, str(exc))
    return None
