from datetime import datetime

from django.db import transaction
from ninja import Router, Schema, Status
from pydantic import Field

from ml_pipeline.config import features as feature_schema
from ml_pipeline.config import model as model_schema
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import BlankIfNull, Id, NotNull, omittable
from ml_platform.modeling import services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import object_for_user, project_for_user
from ml_platform.training.schemas import AsSent, ModelTypeName

router = Router(tags=["modeling"])


class FeatureConfigIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    dataset_id: int
    # Its shape is checked here; its columns against the dataset's by the service (naming the same fields).
    config: feature_schema.FeatureConfig


class FeatureConfigPatch(Schema):
    """Only the fields sent change; ``description`` null clears it."""

    name: NotNull[str] = omittable(min_length=1, max_length=200)
    description: BlankIfNull = omittable()
    dataset_id: NotNull[Id] = omittable()
    config: NotNull[feature_schema.FeatureConfig] = omittable()


class FeatureConfigOut(Schema):
    id: int
    project_id: int
    dataset_id: int
    name: str
    description: str
    config: AsSent[feature_schema.FeatureConfig]
    breakdown: dict
    created_at: datetime
    updated_at: datetime


class ModelConfigIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    feature_config_id: int | None = None
    config: model_schema.ModelConfig


class ModelConfigPatch(Schema):
    """Only the fields sent change; ``description`` null clears it, ``feature_config_id`` null unpairs."""

    name: NotNull[str] = omittable(min_length=1, max_length=200)
    description: BlankIfNull = omittable()
    feature_config_id: Id | None = None
    config: NotNull[model_schema.ModelConfig] = omittable()


class ModelConfigOut(Schema):
    id: int
    project_id: int
    feature_config_id: int | None
    name: str
    description: str
    model_type: ModelTypeName
    config: AsSent[model_schema.ModelConfig]
    parameter_counts: dict | None = Field(
        description="With the dataset's real vocabularies (distinct values, capped by max_vocab_size) where the "
        "feature config's dataset has been previewed, as the trained model will have them"
    )
    parameter_counts_at_max_vocab: dict | None = Field(
        description="With every vocabulary at its max_vocab_size, where that differs (null where it does not)"
    )
    created_at: datetime
    updated_at: datetime


def _feature_out(fc: FeatureConfig) -> dict:
    return {
        **{f: getattr(fc, f) for f in FeatureConfigOut.model_fields if f != "breakdown"},
        "breakdown": services.breakdown(fc),
    }


def _model_out(mc: ModelConfig, paired: FeatureConfig | None = None) -> dict:
    return {
        **{f: getattr(mc, f) for f in ModelConfigOut.model_fields if not f.startswith("parameter_counts")},
        "parameter_counts": services.parameter_counts(mc, paired),
        "parameter_counts_at_max_vocab": services.parameter_counts_at_max_vocab(mc, paired),
    }


def _saved(request, action: str, save, project, changes: dict, instance=None):
    """Create or update a config through its service and record it in the audit trail, together or not at all."""
    with transaction.atomic():
        saved = save(project, request.user, changes, instance=instance)
        audit.record(request, action, saved, changes=changes)
    return saved


def _deleted(request, instance: FeatureConfig | ModelConfig) -> Status:
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, instance):
        services.delete_config(instance)  # refused (409) while a run or a schedule uses it
    return Status(204, None)


@router.get("/projects/{project_id}/feature-configs/", response={200: list[FeatureConfigOut], **refusals(404, 422)})
def list_feature_configs(request, project_id: int, dataset_id: Id | None = None):
    configs = project_for_user(request.user, project_id).feature_configs.all()
    if dataset_id is not None:
        configs = configs.filter(dataset_id=dataset_id)
    return [_feature_out(fc) for fc in configs]


@router.post(
    "/projects/{project_id}/feature-configs/", response={201: FeatureConfigOut, **refusals(400, 404, 409, 422)}
)
def create_feature_config(request, project_id: int, payload: FeatureConfigIn):
    project = project_for_user(request.user, project_id)
    fc = _saved(request, audit.Action.CREATE, services.save_feature_config, project, payload.model_dump(mode="json"))
    return Status(201, _feature_out(fc))


@router.get("/feature-configs/{config_id}/", response={200: FeatureConfigOut, **refusals(404, 422)})
def get_feature_config(request, config_id: int):
    return _feature_out(object_for_user(FeatureConfig, request.user, config_id))


@router.patch("/feature-configs/{config_id}/", response={200: FeatureConfigOut, **refusals(400, 404, 409, 422)})
def update_feature_config(request, config_id: int, payload: FeatureConfigPatch):
    fc = object_for_user(FeatureConfig, request.user, config_id)
    changes = payload.model_dump(mode="json", exclude_unset=True)
    return _feature_out(_saved(request, audit.Action.UPDATE, services.save_feature_config, fc.project, changes, fc))


@router.delete("/feature-configs/{config_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_feature_config(request, config_id: int):
    return _deleted(request, object_for_user(FeatureConfig, request.user, config_id))


@router.get("/projects/{project_id}/model-configs/", response={200: list[ModelConfigOut], **refusals(404, 422)})
def list_model_configs(request, project_id: int, model_type: ModelTypeName | None = None):
    configs = project_for_user(request.user, project_id).model_configs.select_related("feature_config")
    if model_type:
        configs = configs.filter(model_type=model_type)
    return [_model_out(mc) for mc in configs]


@router.post("/projects/{project_id}/model-configs/", response={201: ModelConfigOut, **refusals(400, 404, 409, 422)})
def create_model_config(request, project_id: int, payload: ModelConfigIn):
    project = project_for_user(request.user, project_id)
    mc = _saved(request, audit.Action.CREATE, services.save_model_config, project, payload.model_dump(mode="json"))
    return Status(201, _model_out(mc))


@router.get("/model-configs/{config_id}/", response={200: ModelConfigOut, **refusals(404, 422)})
def get_model_config(request, config_id: int, feature_config_id: Id | None = None):
    """With ``feature_config_id``, parameter counts are computed for that pairing."""
    mc = object_for_user(ModelConfig, request.user, config_id)
    paired = None
    if feature_config_id is not None:
        paired = object_for_user(FeatureConfig, request.user, feature_config_id)
        services.check_pairing(mc, paired)
    return _model_out(mc, paired)


@router.patch("/model-configs/{config_id}/", response={200: ModelConfigOut, **refusals(400, 404, 409, 422)})
def update_model_config(request, config_id: int, payload: ModelConfigPatch):
    mc = object_for_user(ModelConfig, request.user, config_id)
    changes = payload.model_dump(mode="json", exclude_unset=True)
    return _model_out(_saved(request, audit.Action.UPDATE, services.save_model_config, mc.project, changes, mc))


@router.delete("/model-configs/{config_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_model_config(request, config_id: int):
    return _deleted(request, object_for_user(ModelConfig, request.user, config_id))
