from datetime import datetime

from ninja import Router, Schema, Status
from pydantic import Field

from ml_platform.modeling import services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import object_for_user, project_for_user

router = Router(tags=["modeling"])


class FeatureConfigIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    dataset_id: int
    # Validated by the service against the dataset's columns, so errors can
    # name both the config field and the column.
    config: dict


class FeatureConfigPatch(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    dataset_id: int | None = None
    config: dict | None = None


class FeatureConfigOut(Schema):
    id: int
    project_id: int
    dataset_id: int
    name: str
    description: str
    config: dict
    breakdown: dict
    created_at: datetime
    updated_at: datetime


class ModelConfigIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    feature_config_id: int | None = None
    config: dict


class ModelConfigPatch(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    feature_config_id: int | None = None
    config: dict | None = None


class ModelConfigOut(Schema):
    id: int
    project_id: int
    feature_config_id: int | None
    name: str
    description: str
    model_type: str
    config: dict
    parameter_counts: dict | None
    created_at: datetime
    updated_at: datetime


def _feature_out(fc: FeatureConfig) -> dict:
    return {**{f: getattr(fc, f) for f in FeatureConfigOut.model_fields if f != "breakdown"},
            "breakdown": services.breakdown(fc)}


def _model_out(mc: ModelConfig, paired: FeatureConfig | None = None) -> dict:
    return {**{f: getattr(mc, f) for f in ModelConfigOut.model_fields if f != "parameter_counts"},
            "parameter_counts": services.parameter_counts(mc, paired)}


@router.get("/projects/{project_id}/feature-configs/", response=list[FeatureConfigOut])
def list_feature_configs(request, project_id: int, dataset_id: int | None = None):
    configs = project_for_user(request.user, project_id).feature_configs.all()
    if dataset_id is not None:
        configs = configs.filter(dataset_id=dataset_id)
    return [_feature_out(fc) for fc in configs]


@router.post("/projects/{project_id}/feature-configs/", response={201: FeatureConfigOut})
def create_feature_config(request, project_id: int, payload: FeatureConfigIn):
    project = project_for_user(request.user, project_id)
    return Status(201, _feature_out(services.save_feature_config(project, request.user, payload.model_dump())))


@router.get("/feature-configs/{config_id}/", response=FeatureConfigOut)
def get_feature_config(request, config_id: int):
    return _feature_out(object_for_user(FeatureConfig, request.user, config_id))


@router.patch("/feature-configs/{config_id}/", response=FeatureConfigOut)
def update_feature_config(request, config_id: int, payload: FeatureConfigPatch):
    fc = object_for_user(FeatureConfig, request.user, config_id)
    changes = payload.model_dump(exclude_unset=True)
    return _feature_out(services.save_feature_config(fc.project, request.user, changes, instance=fc))


@router.delete("/feature-configs/{config_id}/", response={204: None})
def delete_feature_config(request, config_id: int):
    object_for_user(FeatureConfig, request.user, config_id).delete()
    return Status(204, None)


@router.get("/projects/{project_id}/model-configs/", response=list[ModelConfigOut])
def list_model_configs(request, project_id: int, model_type: str | None = None):
    configs = project_for_user(request.user, project_id).model_configs.select_related("feature_config")
    if model_type:
        configs = configs.filter(model_type=model_type)
    return [_model_out(mc) for mc in configs]


@router.post("/projects/{project_id}/model-configs/", response={201: ModelConfigOut})
def create_model_config(request, project_id: int, payload: ModelConfigIn):
    project = project_for_user(request.user, project_id)
    return Status(201, _model_out(services.save_model_config(project, request.user, payload.model_dump())))


@router.get("/model-configs/{config_id}/", response=ModelConfigOut)
def get_model_config(request, config_id: int, feature_config_id: int | None = None):
    """With ``feature_config_id``, parameter counts are computed for that pairing."""
    mc = object_for_user(ModelConfig, request.user, config_id)
    paired = None
    if feature_config_id is not None:
        paired = object_for_user(FeatureConfig, request.user, feature_config_id)
        services.check_pairing(mc, paired)
    return _model_out(mc, paired)


@router.patch("/model-configs/{config_id}/", response=ModelConfigOut)
def update_model_config(request, config_id: int, payload: ModelConfigPatch):
    mc = object_for_user(ModelConfig, request.user, config_id)
    changes = payload.model_dump(exclude_unset=True)
    return _model_out(services.save_model_config(mc.project, request.user, changes, instance=mc))


@router.delete("/model-configs/{config_id}/", response={204: None})
def delete_model_config(request, config_id: int):
    object_for_user(ModelConfig, request.user, config_id).delete()
    return Status(204, None)
