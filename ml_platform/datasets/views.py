from django.shortcuts import render

from ml_platform.audit import services as audit
from ml_platform.datasets.models import Dataset
from ml_platform.datasets.services import presented_source
from ml_platform.projects.access import object_for_user


def dataset_detail(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    return render(request, "datasets/detail.html", {"dataset": dataset, "project": dataset.project,
                                                    "source": presented_source(dataset),
                                                    "history": audit.history(dataset)})
