from django.db.models import QuerySet
from django.http import Http404

from webapp.datasets.models import Dataset
from webapp.projects.selectors import User, projects_for


def datasets_for(user: User) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project__in=projects_for(user))


def dataset_for(user: User, dataset_id: int) -> Dataset:
    dataset = datasets_for(user).select_related("project").filter(pk=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset
