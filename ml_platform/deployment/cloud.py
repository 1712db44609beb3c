"""The cloud deployment targets: a Vertex AI endpoint and a Cloud Run service with TF Serving.

Both serve the Pusher's SavedModel from Cloud Storage: a version is first copied (once) to
``<CLOUD_STAGING_BUCKET>/models/<serving name>/v<N>/1/`` (TF Serving's layout: a numbered folder under the
model's base path), unless the Pusher already wrote it to a ``gs://`` (or ``/gcs/``) path.

* :class:`VertexEndpointTarget` uploads the version to the Vertex AI Model Registry (a new version of the
  model named after the serving name, aliased ``v<N>``), deploys it to the endpoint of that name (made on
  first deploy) with ``VERTEX_ENDPOINT_MACHINE_TYPE`` and replica bounds, moves all traffic to it and then
  undeploys the versions it replaced;
* :class:`CloudRunTarget` creates or updates the Cloud Run service of that name running TF Serving's
  container (``CLOUD_RUN_SERVING_IMAGE``) on the version's base path, all traffic on the latest revision.

Tests replace :data:`STAGER` (the copy to Cloud Storage) and the client classes with fakes.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from ml_platform.deployment.targets import DeploymentFailed, DeploymentTarget, ModelToServe, TargetStatus

CLOUD_SETTINGS = ("CLOUD_PROJECT_ID", "CLOUD_DATA_REGION", "CLOUD_STAGING_BUCKET")


def missing_settings() -> list[str]:
    return [name for name in CLOUD_SETTINGS if not getattr(settings, name, "")]


def _split_gs(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


class GcsStager:
    """Copies a SavedModel folder to Cloud Storage (google-cloud-storage); returns its gs:// URL."""

    def upload(self, folder: Path, url: str) -> str:
        from google.cloud import storage

        bucket_name, prefix = _split_gs(url)
        bucket = storage.Client(project=settings.CLOUD_PROJECT_ID).bucket(bucket_name)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            bucket.blob(f"{prefix}/{path.relative_to(folder).as_posix()}").upload_from_filename(str(path))
        return url


STAGER = GcsStager()


def model_base(model: ModelToServe) -> tuple[str, str]:
    """The version's TF Serving base path on Cloud Storage and its SavedModel folder under it, copied once.

    A SavedModel a remote run's Pusher already wrote to the bucket is served from where it is: its folder is
    numbered by the run (``.../pushed/<model>/<run number>``), so its parent is the base path.
    """
    source = str(model.model_path)
    if source.startswith("/gcs/"):
        source = "gs://" + source.removeprefix("/gcs/")
    if source.startswith("gs://"):
        return source.rstrip("/").rsplit("/", 1)[0], source.rstrip("/")
    base = f"{settings.CLOUD_STAGING_BUCKET.rstrip('/')}/models/{model.serving_name}/v{model.version}"
    STAGER.upload(Path(source), f"{base}/1")
    return base, f"{base}/1"


def resource_id(serving_name: str, limit: int = 49) -> str:
    """A Cloud Run service id / display name: lower-case letters, digits and dashes, starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", serving_name.lower()).strip("-")
    return ("m-" + cleaned if not cleaned[:1].isalpha() else cleaned)[:limit].rstrip("-")


class VertexEndpointTarget(DeploymentTarget):
    name = "vertex_ai"
    label = "Vertex AI endpoint"

    def _aiplatform(self):
        from google.cloud import aiplatform

        return aiplatform

    def _location(self) -> dict:
        return {"project": settings.CLOUD_PROJECT_ID, "location": settings.CLOUD_DATA_REGION}

    def _endpoint(self, serving_name: str, create: bool = False):
        aiplatform = self._aiplatform()
        found = aiplatform.Endpoint.list(filter=f'display_name="{resource_id(serving_name, 128)}"', **self._location())
        if found:
            return found[0]
        if not create:
            return None
        return aiplatform.Endpoint.create(display_name=resource_id(serving_name, 128), **self._location())

    def _url(self, endpoint) -> str:
        return f"https://{settings.CLOUD_DATA_REGION}-aiplatform.googleapis.com/v1/{endpoint.resource_name}:predict"

    def deploy(self, model: ModelToServe) -> TargetStatus:
        aiplatform = self._aiplatform()
        display = resource_id(model.serving_name, 128)
        try:
            _, saved_model = model_base(model)
            parents = aiplatform.Model.list(filter=f'display_name="{display}"', **self._location())
            uploaded = aiplatform.Model.upload(
                display_name=display,
                artifact_uri=saved_model,
                serving_container_image_uri=settings.VERTEX_SERVING_IMAGE,
                parent_model=parents[0].resource_name if parents else None,
                is_default_version=True,
                version_aliases=[f"v{model.version}"],
                labels={"ml-platform-version": str(model.version)},
                **self._location(),
            )
            endpoint = self._endpoint(model.serving_name, create=True)
            replaced = list(endpoint.list_models())
            endpoint.deploy(
                model=uploaded,
                deployed_model_display_name=f"{display}-v{model.version}"[:128],
                traffic_percentage=100,
                machine_type=settings.VERTEX_ENDPOINT_MACHINE_TYPE,
                min_replica_count=settings.VERTEX_ENDPOINT_MIN_REPLICAS,
                max_replica_count=settings.VERTEX_ENDPOINT_MAX_REPLICAS,
                service_account=settings.CLOUD_SERVICE_ACCOUNT or None,
            )
            for old in replaced:  # all traffic is on the new version now
                endpoint.undeploy(deployed_model_id=old.id)
        except DeploymentFailed:
            raise
        except Exception as error:  # noqa: BLE001 (the service's refusal, for the user)
            raise DeploymentFailed(f"Vertex AI refused version {model.version}: {error}") from None
        return TargetStatus(TargetStatus.AVAILABLE, model.version, self._url(endpoint))

    def undeploy(self, serving_name: str) -> TargetStatus:
        try:
            endpoint = self._endpoint(serving_name)
            if endpoint is not None:
                endpoint.undeploy_all()
        except Exception as error:  # noqa: BLE001
            raise DeploymentFailed(f"Vertex AI could not undeploy {serving_name}: {error}") from None
        return TargetStatus(TargetStatus.ABSENT)

    def status(self, serving_name: str) -> TargetStatus:
        try:
            endpoint = self._endpoint(serving_name)
            deployed = list(endpoint.list_models()) if endpoint is not None else []
        except Exception as error:  # noqa: BLE001
            return TargetStatus(TargetStatus.UNREACHABLE, message=str(error))
        if not deployed:
            return TargetStatus(TargetStatus.ABSENT)
        version = re.search(r"-v(\d+)$", deployed[-1].display_name or "")
        return TargetStatus(TargetStatus.AVAILABLE, int(version.group(1)) if version else None, self._url(endpoint))


class CloudRunTarget(DeploymentTarget):
    name = "cloud_run"
    label = "Cloud Run (TF Serving)"

    def _client(self):
        from google.cloud import run_v2

        return run_v2.ServicesClient()

    def _service_name(self, serving_name: str) -> str:
        parent = f"projects/{settings.CLOUD_PROJECT_ID}/locations/{settings.CLOUD_DATA_REGION}"
        return f"{parent}/services/{resource_id(serving_name)}"

    def service(self, model: ModelToServe, base: str):
        from google.cloud import run_v2

        container = run_v2.Container(
            image=settings.CLOUD_RUN_SERVING_IMAGE,
            args=[
                "--rest_api_port=8080",
                "--port=8500",
                f"--model_name={model.serving_name}",
                f"--model_base_path={base}",
            ],
            ports=[run_v2.ContainerPort(container_port=8080)],
            resources=run_v2.ResourceRequirements(limits={"cpu": "2", "memory": "4Gi"}),
        )
        return run_v2.Service(
            name=self._service_name(model.serving_name),
            labels={"ml-platform-version": str(model.version)},
            template=run_v2.RevisionTemplate(
                containers=[container],
                service_account=settings.CLOUD_SERVICE_ACCOUNT,
                scaling=run_v2.RevisionScaling(
                    min_instance_count=settings.CLOUD_RUN_MIN_INSTANCES,
                    max_instance_count=settings.CLOUD_RUN_MAX_INSTANCES,
                ),
            ),
            traffic=[
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
                )
            ],
        )

    def deploy(self, model: ModelToServe) -> TargetStatus:
        from google.api_core import exceptions

        client = self._client()
        name = self._service_name(model.serving_name)
        try:
            service = self.service(model, model_base(model)[0])
            try:
                client.get_service(name=name)
                operation = client.update_service(service=service)
            except exceptions.NotFound:
                parent, _, service_id = name.rpartition("/services/")
                service.name = ""  # a new service is named by its id
                operation = client.create_service(parent=parent, service=service, service_id=service_id)
            served = operation.result(timeout=settings.SERVING_LOAD_TIMEOUT)
        except DeploymentFailed:
            raise
        except Exception as error:  # noqa: BLE001
            raise DeploymentFailed(f"Cloud Run refused version {model.version}: {error}") from None
        return TargetStatus(TargetStatus.AVAILABLE, model.version, f"{served.uri}/v1/models/{model.serving_name}")

    def undeploy(self, serving_name: str) -> TargetStatus:
        from google.api_core import exceptions

        try:
            self._client().delete_service(name=self._service_name(serving_name)).result(
                timeout=settings.SERVING_LOAD_TIMEOUT
            )
        except exceptions.NotFound:
            pass
        except Exception as error:  # noqa: BLE001
            raise DeploymentFailed(f"Cloud Run could not delete {serving_name}: {error}") from None
        return TargetStatus(TargetStatus.ABSENT)

    def status(self, serving_name: str) -> TargetStatus:
        from google.api_core import exceptions

        try:
            service = self._client().get_service(name=self._service_name(serving_name))
        except exceptions.NotFound:
            return TargetStatus(TargetStatus.ABSENT)
        except Exception as error:  # noqa: BLE001
            return TargetStatus(TargetStatus.UNREACHABLE, message=str(error))
        version = (service.labels or {}).get("ml-platform-version")
        state = TargetStatus.LOADING if service.reconciling else TargetStatus.AVAILABLE
        return TargetStatus(state, int(version) if version else None, f"{service.uri}/v1/models/{serving_name}")
