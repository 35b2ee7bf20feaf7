from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from webapp.datasets.models import Dataset, DatasetExport, Prompt
from webapp.projects.models import Project, Role
from webapp.projects.selectors import AuthUser, User, projects_for


def datasets_for(user: User) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project__in=projects_for(user))


def dataset_for(user: User, dataset_id: int) -> Dataset:
    dataset = datasets_for(user).select_related("project", "created_by").filter(pk=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def owned_projects(user: AuthUser) -> list[Project]:
    return list(projects_for(user).filter(memberships__user=user, memberships__role=Role.OWNER).order_by("name"))


def dataset_rows(dataset: Dataset, *, after: int = -1, limit: int = 50) -> tuple[list[Prompt], int | None]:
    """Rows after index `after` (keyset on the (dataset, index) key)."""
    rows = list(dataset.prompts.filter(index__gt=after).order_by("index")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].index if more else None)


def dataset_versions(dataset: Dataset) -> list[Dataset]:
    return list(Dataset.objects.filter(project_id=dataset.project_id, name=dataset.name).order_by("-version")[:50])


def export_for(dataset: Dataset, export_id: int) -> DatasetExport:
    job = dataset.exports.filter(pk=export_id).first()
    if job is None:
        raise Http404("No such export.")
    return job


def is_importing(dataset: Dataset) -> bool:
    """Still with a worker (queued or being parsed): its page refreshes until it ends."""
    return dataset.status in (Dataset.Status.QUEUED, Dataset.Status.IMPORTING)


def upload_preview(dataset: Dataset) -> tuple[list[str], list[dict[str, str]]]:
    """The column names and first rows of a staged upload (empty once it is imported)."""
    from webapp.datasets import files, services

    path = services.upload_dir(dataset.pk) / files.upload_name(dataset.source.get("file"))
    if not path.is_file():
        return [], []
    try:
        return files.preview(path)
    except files.DatasetError:
        return [], []
