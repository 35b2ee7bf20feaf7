from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.datasets.selectors import dataset_for, datasets_for


def dataset_list(request: HttpRequest) -> HttpResponse:
    datasets = datasets_for(request.user).select_related("project").order_by("-created_at")[:500]
    return render(request, "datasets/list.html", {"datasets": datasets})


def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = dataset_for(request.user, dataset_id)
    rows = dataset.prompts.order_by("index")[:100]
    return render(request, "datasets/detail.html", {"dataset": dataset, "rows": rows})
