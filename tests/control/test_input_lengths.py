"""Text the API stores in a length-limited column is limited by its input schema too: too long is a 422
naming the field (PostgreSQL would refuse the INSERT with a 500; SQLite would store it)."""

from __future__ import annotations

import types
import typing

import pytest
from annotated_types import MaxLen
from django.db import models
from django.test import Client
from pydantic import BaseModel

from ml_platform.accounts.models import ApiToken
from ml_platform.api import api as ninja_api
from ml_platform.datasets.models import Dataset
from ml_platform.deployment.models import Deployment
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Project
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules.models import NotificationTarget, TrainingSchedule
from ml_platform.training.models import TrainingRun
from tests.helpers import JsonClient, errors_by_field

# Each input schema with text fields, and the models whose columns of the same names it writes.
STORED_IN: dict[str, tuple[type[models.Model], ...]] = {
    "accounts.api.TokenIn": (ApiToken,),
    "projects.api.ProjectIn": (Project,),
    "projects.api.ProjectPatch": (Project,),
    "datasets.api.DatasetIn": (Dataset,),
    "datasets.api.DatasetPatch": (Dataset,),
    "modeling.api.FeatureConfigIn": (FeatureConfig,),
    "modeling.api.FeatureConfigPatch": (FeatureConfig,),
    "modeling.api.ModelConfigIn": (ModelConfig,),
    "modeling.api.ModelConfigPatch": (ModelConfig,),
    "training.schemas.TrainingRunIn": (TrainingRun, RegisteredModel),
    "training.schemas.RerunIn": (TrainingRun,),
    "experiments.api.ExperimentIn": (TrainingRun,),
    "experiments.api.PromoteIn": (TrainingRun, RegisteredModel),
    "deployment.api.DeployIn": (Deployment,),
    "deployment.api.DeployRunIn": (Deployment,),
    "schedules.schemas.ScheduleCreateIn": (TrainingSchedule,),
    "schedules.schemas.FromRunIn": (TrainingSchedule,),
    "schedules.schemas.ScheduleIn": (TrainingSchedule,),
    "schedules.schemas.TargetIn": (NotificationTarget,),
}
# Input schemas whose text is not stored in a column of its own (looked up, computed with, or kept as JSON).
NOT_IN_A_COLUMN = {
    "projects.api.MemberIn": "the username is looked up",
    "schedules.schemas.TimingIn": "the next runs are computed, nothing is stored",
    "ml_pipeline.config.dataset.CsvOptions": "stored in the upload's JSON",
}


def _name(schema: type) -> str:
    return f"{schema.__module__}.{schema.__qualname__}".removeprefix("ml_platform.")


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _models_in(arg)]


def input_schemas() -> dict[str, type[BaseModel]]:
    """Every request body and form schema of the API's operations."""
    found = {}
    for _, router in ninja_api._routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                for params in operation.models:
                    if params.__name__ not in ("BodyParams", "FormParams"):
                        continue
                    for field in params.model_fields.values():
                        found.update({_name(schema): schema for schema in _models_in(field.annotation)})
    return found


def _is_text(annotation) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_text(arg) for arg in typing.get_args(annotation))
    return False


def text_fields(schema: type[BaseModel]) -> dict[str, int | None]:
    """A schema's text fields and the max length each declares (None: none)."""
    return {
        name: next((m.max_length for m in field.metadata if isinstance(m, MaxLen)), None)
        for name, field in schema.model_fields.items()
        if _is_text(field.annotation)
    }


def test_every_input_schema_with_text_is_accounted_for():
    with_text = {name for name, schema in input_schemas().items() if text_fields(schema)}
    assert with_text - STORED_IN.keys() - NOT_IN_A_COLUMN.keys() == set()


def test_every_text_input_stored_in_a_charfield_declares_at_most_its_max_length():
    schemas = input_schemas()
    unlimited = {}
    for name, stored_in in STORED_IN.items():
        for field, declared in text_fields(schemas[name]).items():
            for model in stored_in:
                column = next((f for f in model._meta.fields if f.name == field), None)
                if isinstance(column, models.CharField) and (declared is None or declared > column.max_length):
                    unlimited[f"{name}.{field}"] = f"{declared} > {model.__name__}.{field} ({column.max_length})"
    assert unlimited == {}


@pytest.mark.django_db
def test_a_token_name_longer_than_its_column_is_refused_naming_the_field(olivia):
    client = Client()
    client.force_login(olivia)
    response = JsonClient(client).post("/api/tokens/", {"name": "x" * 101})
    assert errors_by_field(response, 422) == {"name": "String should have at most 100 characters"}
    assert not ApiToken.objects.exists()
