"""The New Training wizard offers what a run may choose: the runners this installation has configured (local
always), and the GPU types the chosen runner can have (on Vertex AI, those training offers in the region)."""

from __future__ import annotations

from html.parser import HTMLParser

from ml_platform.runners.models import ProjectRunner
from ml_platform.training.models import TrainingRun


class Options(HTMLParser):
    """``<option>``s of each ``<select>`` by name: value -> (attributes, text)."""

    def __init__(self, html: str):
        super().__init__()
        self.selects: dict[str, dict[str, tuple[dict, str]]] = {}
        self._select = self._option = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "select":
            self._select = self.selects.setdefault(attrs["name"], {})
        elif tag == "option" and self._select is not None:
            self._option = attrs["value"]
            self._select[self._option] = (attrs, "")

    def handle_data(self, data):
        if self._option is not None:
            attrs, text = self._select[self._option]
            self._select[self._option] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "option":
            self._option = None
        elif tag == "select":
            self._select = None


def wizard_options(pages, project) -> Options:
    response = pages.get(f"/projects/{project.id}/training/wizard/")
    assert response.status_code == 200
    return Options(response.content.decode())


def enabled(options: dict) -> list[str]:
    return [value for value, (attrs, _) in options.items() if value and "disabled" not in attrs]


def test_without_cloud_settings_the_wizard_offers_the_local_runner_and_every_gpu_type(pages, project):
    found = wizard_options(pages, project)
    runners = found.selects["runner"]
    assert enabled(runners) == ["local"] and "selected" in runners["local"][0]
    assert "KUBEFLOW_HOST" in runners["kubeflow"][0]["title"] and "not configured" in runners["vertex"][1]
    assert enabled(found.selects["gpu_config.gpu_type"]) == ["T4", "V100", "L4", "A100", "H100"]


def test_on_vertex_the_gpu_types_its_training_region_lacks_are_disabled_with_the_reason(
    vertex_configured, pages, project
):
    ProjectRunner.objects.create(project=project, runner="vertex")
    found = wizard_options(pages, project)
    assert enabled(found.selects["runner"]) == ["local", "vertex"]
    assert "selected" in found.selects["runner"]["vertex"][0]
    gpus = found.selects["gpu_config.gpu_type"]
    assert enabled(gpus) == ["T4", "V100", "L4", "A100"]
    attrs, text = gpus["H100"]
    assert text == "H100 — unavailable"
    assert attrs["data-refused-vertex"] == (
        "not offered for training in europe-west4 (regions with H100: us-central1, us-west1)"
    )
    assert attrs["data-counts"] == "8"


def test_on_the_local_runner_the_regions_gpu_types_stay_offered_but_vertexs_refusals_ride_along(
    vertex_configured, pages, project
):
    vertex_configured.CLOUD_GPU_TRAINING_REGION = "europe-central2"
    found = wizard_options(pages, project)
    gpus = found.selects["gpu_config.gpu_type"]
    assert enabled(gpus) == ["T4", "V100", "L4", "A100", "H100"]  # local: the machine's own GPUs
    assert all("data-refused-vertex" in attrs for value, (attrs, _) in gpus.items() if value)
    assert (
        "not offered for training in europe-central2 (regions with T4: asia-east1,"
        in (gpus["T4"][0]["data-refused-vertex"])
    )


def test_the_api_answers_why_each_configured_runner_cannot_have_a_gpu_type(vertex_configured, api, project):
    vertex_configured.CLOUD_GPU_TRAINING_REGION = "europe-central2"
    answer = api.get(f"/api/projects/{project.id}/runner/").json()
    assert answer["gpu_unavailable"]["local"] == {}
    assert sorted(answer["gpu_unavailable"]["vertex"]) == ["A100", "H100", "L4", "T4", "V100"]
    assert answer["gpu_choices"] == {}
    assert "kubeflow" not in answer["gpu_unavailable"]


def test_the_wizard_sends_the_chosen_runner_with_the_run(vertex_configured, pages, project, run_body):
    form = {
        "name": "recs",
        "dataset_id": run_body["dataset_id"],
        "feature_config_id": run_body["feature_config_id"],
        "model_config_id": run_body["model_config_id"],
        "training_params.epochs": "2",
        "runner": "vertex",
    }
    response = pages.post(f"/projects/{project.id}/training/wizard/submit/", form, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "wizard-done" in response["HX-Trigger"], response.content.decode()[:400]
    assert TrainingRun.objects.get(name="recs").remote_job.backend == "vertex"
