from django.shortcuts import render

from ml_platform.datasets.models import Dataset
from ml_platform.projects.access import object_for_user


def dataset_detail(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    return render(request, "datasets/detail.html", {"dataset": dataset, "project": dataset.project})
