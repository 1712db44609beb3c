"""Feature configs: how each tower turns columns into one input tensor.

Each tower (buyer/query and product/candidate) lists features; each feature
becomes a slice of the tower's input vector. :func:`tensor_breakdown` gives
every slice's width and the total, exactly as the UI draws the tensor bar,
and the Trainer builds the same layers from the same numbers.

Dimensions per feature kind:

=============  ==========================  ===================================
kind           transform                   width in the tower input
=============  ==========================  ===================================
id             vocabulary + embedding      ``embedding_dim``
categorical    vocabulary + embedding      ``embedding_dim``
text           token vocabulary, mean bag  ``embedding_dim``
numeric        normalize                   1
numeric        bucketize (N buckets)       ``embedding_dim``
timestamp      cyclical (sin, cos / period) 2 x number of periods
timestamp      bucketize (N buckets)       ``embedding_dim``
cross          hashed, N buckets           ``embedding_dim``
=============  ==========================  ===================================
"""

from __future__ import annotations

import copy
import difflib
from typing import Annotated, Literal

from pydantic import Field, model_validator

from ml_pipeline.config.dataset import StrictModel
from ml_pipeline.errors import UNION_TAGS, ConfigError, Problem

MAX_VOCAB = 10_000_000
MAX_EMBEDDING_DIM = 1024


def default_embedding_dim(vocabulary_size: int) -> int:
    """An embedding width for a vocabulary: about four times its fourth root, a multiple of 8 from 8 to 128
    (300 values: 16; 4,000: 32; 100,000: 72)."""
    return max(8, min(128, 8 * round(vocabulary_size**0.25 / 2)))


class _VocabularyFeature(StrictModel):
    column: str = Field(min_length=1)
    embedding_dim: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EMBEDDING_DIM,
        description="Left out: derived from the vocabulary size (about 4 x its fourth root, 8 to 128), "
        "the dataset's distinct values where it has been previewed, else max_vocab_size",
    )
    max_vocab_size: int = Field(default=100_000, ge=1, le=MAX_VOCAB, description="Top-N values kept by frequency")
    min_count: int = Field(default=1, ge=1, description="Values seen fewer times go to OOV buckets")
    oov_buckets: int = Field(default=1, ge=1, le=1000)

    def width(self) -> int:
        return self.embedding_dim or default_embedding_dim(self.max_vocab_size)

    def table_rows(self) -> int:
        return self.max_vocab_size + self.oov_buckets


class IdFeature(_VocabularyFeature):
    kind: Literal["id"] = "id"


class CategoricalFeature(_VocabularyFeature):
    kind: Literal["categorical"] = "categorical"


class TextFeature(_VocabularyFeature):
    kind: Literal["text"] = "text"
    max_tokens: int = Field(default=16, ge=1, le=512, description="Tokens kept per value")


class NumericFeature(StrictModel):
    kind: Literal["numeric"] = "numeric"
    column: str = Field(min_length=1)
    transform: Literal["normalize", "bucketize"] = "normalize"
    log1p: bool = False
    buckets: int | None = Field(default=None, ge=2, le=10_000)
    embedding_dim: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIM)

    @model_validator(mode="after")
    def _bucketize_needs_sizes(self) -> NumericFeature:
        if self.transform == "bucketize":
            if self.buckets is None:
                raise ValueError("buckets: required when transform is 'bucketize'")
            if self.embedding_dim is None:
                raise ValueError("embedding_dim: required when transform is 'bucketize'")
        elif self.buckets is not None or self.embedding_dim is not None:
            raise ValueError("transform: buckets and embedding_dim only apply to 'bucketize'")
        return self

    def width(self) -> int:
        return self.embedding_dim if self.transform == "bucketize" else 1

    def table_rows(self) -> int:
        return self.buckets if self.transform == "bucketize" else 0


CYCLICAL_PERIODS = ("hour_of_day", "day_of_week", "day_of_month", "month_of_year")


class TimestampFeature(StrictModel):
    kind: Literal["timestamp"] = "timestamp"
    column: str = Field(min_length=1)
    transform: Literal["cyclical", "bucketize"] = "cyclical"
    periods: list[Literal[CYCLICAL_PERIODS]] = [  # type: ignore[valid-type]
        "day_of_week",
        "month_of_year",
    ]
    buckets: int | None = Field(default=None, ge=2, le=10_000)
    embedding_dim: int | None = Field(default=None, ge=1, le=MAX_EMBEDDING_DIM)

    @model_validator(mode="after")
    def _transform_fields(self) -> TimestampFeature:
        if self.transform == "cyclical":
            if not self.periods:
                raise ValueError("periods: at least one period is needed for 'cyclical'")
            if len(set(self.periods)) != len(self.periods):
                raise ValueError("periods: each period may appear once")
            if self.buckets is not None or self.embedding_dim is not None:
                raise ValueError("transform: buckets and embedding_dim only apply to 'bucketize'")
        else:
            if self.buckets is None:
                raise ValueError("buckets: required when transform is 'bucketize'")
            if self.embedding_dim is None:
                raise ValueError("embedding_dim: required when transform is 'bucketize'")
        return self

    def width(self) -> int:
        return 2 * len(self.periods) if self.transform == "cyclical" else self.embedding_dim

    def table_rows(self) -> int:
        return self.buckets if self.transform == "bucketize" else 0


Feature = Annotated[
    IdFeature | CategoricalFeature | TextFeature | NumericFeature | TimestampFeature,
    Field(discriminator="kind"),
]
UNION_TAGS.update({"id", "categorical", "text", "numeric", "timestamp"})
CROSSABLE_KINDS = {"id", "categorical", "numeric", "timestamp"}


class Cross(StrictModel):
    """A hashed cross of two or more features of the same tower (e.g. category x subcategory)."""

    columns: list[str] = Field(min_length=2, max_length=4)
    hash_buckets: int = Field(ge=2, le=MAX_VOCAB)
    embedding_dim: int = Field(ge=1, le=MAX_EMBEDDING_DIM)

    @property
    def name(self) -> str:
        return " x ".join(self.columns)

    def width(self) -> int:
        return self.embedding_dim


class Tower(StrictModel):
    features: list[Feature] = Field(min_length=1)
    crosses: list[Cross] = []

    @model_validator(mode="after")
    def _features_unique_and_crosses_resolvable(self) -> Tower:
        by_column: dict[str, str] = {}
        for index, feature in enumerate(self.features):
            if feature.column in by_column:
                raise ValueError(f"features[{index}].column: '{feature.column}' is used twice in this tower")
            by_column[feature.column] = feature.kind
        for index, cross in enumerate(self.crosses):
            for column in cross.columns:
                if column not in by_column:
                    raise ValueError(f"crosses[{index}].columns: '{column}' is not a feature of this tower")
                if by_column[column] not in CROSSABLE_KINDS:
                    raise ValueError(f"crosses[{index}].columns: a {by_column[column]} feature cannot be crossed")
            if len(set(cross.columns)) != len(cross.columns):
                raise ValueError(f"crosses[{index}].columns: a column may appear once")
        return self


TARGET_TRANSFORMS = ("log1p", "clip", "scale")


class TargetTransform(StrictModel):
    op: Literal[TARGET_TRANSFORMS]  # type: ignore[valid-type]
    min: float | None = None
    max: float | None = None
    factor: float | None = None

    @model_validator(mode="after")
    def _arguments(self) -> TargetTransform:
        if self.op == "clip":
            if self.min is None and self.max is None:
                raise ValueError("min: clip needs min, max or both")
            if self.min is not None and self.max is not None and self.min >= self.max:
                raise ValueError("max: must be greater than min")
        if self.op == "scale" and not self.factor:
            raise ValueError("factor: scale needs a non-zero factor")
        return self


class Target(StrictModel):
    """The rating/quantity column a ranking or multitask model predicts."""

    column: str = "target"
    transforms: list[TargetTransform] = []


class FeatureConfig(StrictModel):
    buyer_tower: Tower
    product_tower: Tower
    target: Target | None = None

    def tower(self, name: str) -> Tower:
        return self.buyer_tower if name == "buyer" else self.product_tower

    def with_vocabularies(self, sizes: dict[str, int]) -> FeatureConfig:
        """This config with each id and categorical vocabulary as large as the data's distinct values (at most
        ``max_vocab_size``): the tables a model trained on that data holds. Widths stay as they were."""
        towers = {}
        for tower_name in ("buyer", "product"):
            tower = self.tower(tower_name)
            features = []
            for feature in tower.features:
                if feature.kind in ("id", "categorical") and feature.column in sizes:
                    size = max(1, min(feature.max_vocab_size, int(sizes[feature.column])))
                    feature = feature.model_copy(update={"max_vocab_size": size, "embedding_dim": feature.width()})
                features.append(feature)
            towers[f"{tower_name}_tower"] = tower.model_copy(update={"features": features})
        return self.model_copy(update=towers)

    def role_problems(self) -> list[Problem]:
        """Each tower carries its own id and not the other's, and the target is no input: every problem."""
        problems = []
        for tower_name, own, other in (("buyer", "buyer_id", "product_id"), ("product", "product_id", "buyer_id")):
            features = self.tower(tower_name).features
            if own not in {f.column for f in features}:
                problems.append(
                    Problem(f"{tower_name}_tower.features", f"the {tower_name} tower must include the '{own}' column")
                )
            for index, feature in enumerate(features):
                if feature.column == other:
                    other_tower = "product" if tower_name == "buyer" else "buyer"
                    problems.append(
                        Problem(
                            f"{tower_name}_tower.features[{index}].column",
                            f"'{other}' belongs to the {other_tower} tower",
                        )
                    )
        inputs = {f.column for name in ("buyer", "product") for f in self.tower(name).features}
        if self.target and self.target.column in inputs:
            problems.append(Problem("target.column", "the target cannot also be an input feature"))
        return problems

    def check_columns(self, available: dict[str, str]) -> None:
        """Check the towers' roles and that every referenced column exists with a usable type; every problem.

        ``available`` maps output column name -> declared dtype (string, int,
        float, timestamp), as :meth:`ColumnMapping.output_columns` returns.
        """
        usable = {
            "id": {"string", "int"},
            "categorical": {"string", "int"},
            "text": {"string"},
            "numeric": {"int", "float"},
            "timestamp": {"timestamp"},
        }
        problems = self.role_problems()
        for tower_name in ("buyer", "product"):
            for index, feature in enumerate(self.tower(tower_name).features):
                where = f"{tower_name}_tower.features[{index}].column"
                dtype = available.get(feature.column)
                if dtype is None:
                    problems.append(
                        Problem(
                            where,
                            f"column '{feature.column}' is not in the dataset{_closest(feature.column, available)}",
                        )
                    )
                elif dtype not in usable[feature.kind]:
                    problems.append(
                        Problem(
                            where,
                            f"column '{feature.column}' is {dtype}; a {feature.kind} feature needs "
                            f"{' or '.join(sorted(usable[feature.kind]))}",
                        )
                    )
        if self.target:
            dtype = available.get(self.target.column)
            if dtype is None:
                problems.append(
                    Problem(
                        "target.column",
                        f"column '{self.target.column}' is not in the dataset{_closest(self.target.column, available)}",
                    )
                )
            elif dtype not in {"int", "float"}:
                problems.append(Problem("target.column", f"column '{self.target.column}' is {dtype}, not numeric"))
        if problems:
            raise ConfigError(problems)


def _closest(name: str, candidates) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{match[0]}'?)" if match else ""


def named_by_role(config: dict, roles: dict[str, str]) -> tuple[dict, dict[str, tuple[str, str]]]:
    """A feature config's JSON with source column names the mapping gave a role (``user_id`` mapped as
    ``buyer_id``) replaced by the role, and where each was: {field path: (source column, role)}."""
    renamed: dict[str, tuple[str, str]] = {}
    config = copy.deepcopy(config)

    def rename(holder: dict, key: str, path: str) -> None:
        value = holder.get(key)
        if isinstance(value, str) and value in roles:
            holder[key] = roles[value]
            renamed[path] = (value, roles[value])

    for tower_name in ("buyer_tower", "product_tower"):
        tower = config.get(tower_name)
        if not isinstance(tower, dict):
            continue
        for index, feature in enumerate(tower.get("features") or []):
            if isinstance(feature, dict):
                rename(feature, "column", f"{tower_name}.features[{index}].column")
        for index, cross in enumerate(tower.get("crosses") or []):
            columns = cross.get("columns") if isinstance(cross, dict) else None
            if isinstance(columns, list):
                for column in columns:
                    if isinstance(column, str) and column in roles:
                        renamed[f"{tower_name}.crosses[{index}].columns"] = (column, roles[column])
                cross["columns"] = [roles.get(c, c) if isinstance(c, str) else c for c in columns]
    if isinstance(config.get("target"), dict):
        rename(config["target"], "column", "target.column")
    return config, renamed


def tensor_breakdown(config: FeatureConfig) -> dict:
    """Each tower's input slices and total width, in the order the Trainer concatenates them."""
    towers = {}
    for tower_name in ("buyer", "product"):
        tower = config.tower(tower_name)
        slices = [{"name": feature.column, "kind": feature.kind, "dim": feature.width()} for feature in tower.features]
        slices += [{"name": cross.name, "kind": "cross", "dim": cross.width()} for cross in tower.crosses]
        towers[tower_name] = {"features": slices, "total": sum(s["dim"] for s in slices)}
    return towers
