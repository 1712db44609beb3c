"""The artifacts the stages hand each other, as types that know their files and read them (after TFX's
standard artifacts).

A stage declares the types it reads and the one it writes (:mod:`ml_pipeline.stages.base`); a reader of
an artifact — a later stage, the platform, the serving side — goes through its type, never through the
producing stage's module. Each type wraps an artifact's ``output/`` folder; ``FILES`` names what the
producing stage writes there (a path or a glob), and the runner refuses a stage that left a required one
out. Reading is lazy and imports nothing heavy until it is asked to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ml_pipeline.artifacts import Artifact

if TYPE_CHECKING:
    import pyarrow as pa
    from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

    from ml_pipeline.blessing import Blessing
    from ml_pipeline.model import TrainedModels
    from ml_pipeline.model.transform import TransformArtifact

T = TypeVar("T", bound="ArtifactType")


class ArtifactType:
    """One artifact's output folder, read through the files its type names."""

    TYPE_NAME: ClassVar[str]
    FILES: ClassVar[dict[str, str]] = {}  # name -> path or glob under the output folder
    OPTIONAL: ClassVar[tuple[str, ...]] = ()  # names of FILES that may be absent

    def __init__(self, path: str | Path, properties: dict[str, Any] | None = None, fingerprint: str = ""):
        self.path = Path(path)
        self.properties = dict(properties or {})
        self.fingerprint = fingerprint

    @classmethod
    def of(cls: type[T], artifact: Artifact) -> T:
        """The reader of a complete stage output (its manifest record)."""
        return cls(artifact.path, artifact.properties, artifact.fingerprint)

    def file(self, name: str) -> Path:
        return self.path / self.FILES[name]

    @classmethod
    def missing_files(cls, folder: Path) -> list[str]:
        """The required files of ``FILES`` that ``folder`` lacks (the post-condition of a stage's run)."""
        return [
            pattern
            for name, pattern in cls.FILES.items()
            if name not in cls.OPTIONAL and not any(Path(folder).glob(pattern))
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class CompiledSpec(ArtifactType):
    """Compile's output: the spec with defaults resolved, as every later stage reads it."""

    TYPE_NAME = "CompiledSpec"
    FILES = {"spec": "compiled_spec.json", "fingerprint": "fingerprint"}

    def load(self) -> dict[str, Any]:
        return json.loads(self.file("spec").read_text())


class Examples(ArtifactType):
    """ExampleGen's output: the mapped rows split into Parquet parts, and the product catalog.

    Every split is a folder of ``part-<i>.parquet`` files with the mapped columns (``buyer_id``,
    ``product_id``, ``timestamp``, ``target``, features under their source names); an empty split holds
    one file with the schema and no rows. ``catalog.parquet`` has one row per product seen in any split:
    ``product_id``, the product feature columns and ``train_count``.
    """

    TYPE_NAME = "Examples"
    SPLITS = ("train", "eval", "test")
    FILES = {
        "train": "train/*.parquet",
        "eval": "eval/*.parquet",
        "test": "test/*.parquet",
        "catalog": "catalog.parquet",
    }

    def split_glob(self, split: str) -> str:
        """The glob of one split's Parquet parts (what DuckDB's ``read_parquet`` takes)."""
        return str(self.path / split / "*.parquet")

    def has_split(self, split: str) -> bool:
        """Whether the split has Parquet parts (rows or not)."""
        return any((self.path / split).glob("*.parquet"))

    def splits(self) -> list[str]:
        """The splits that have a folder, in order."""
        return [split for split in self.SPLITS if (self.path / split).is_dir()]

    def read_split(self, split: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.path / split)

    @property
    def catalog_path(self) -> Path:
        return self.file("catalog")

    def read_catalog(self) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.catalog_path)


def feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    """A feature's name in TFDV statistics (its path, or the legacy ``name``)."""
    return ".".join(feature.path.step) or feature.name


class ExampleStatistics(ArtifactType):
    """StatisticsGen's output: ``stats.pb``, a TFDV ``DatasetFeatureStatisticsList`` with one dataset per
    split (numeric features with a STANDARD histogram of ``HISTOGRAM_BUCKETS`` equal-width buckets), and
    ``summary.json``, the compact version the platform shows."""

    TYPE_NAME = "ExampleStatistics"
    FILES = {"statistics": "stats.pb", "summary": "summary.json"}
    HISTOGRAM_BUCKETS = 10

    def load(self) -> statistics_pb2.DatasetFeatureStatisticsList:
        from tensorflow_metadata.proto.v0 import statistics_pb2

        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(self.file("statistics").read_bytes())
        return stats

    def dataset(self, split: str, stats: statistics_pb2.DatasetFeatureStatisticsList | None = None):
        """One split's ``DatasetFeatureStatistics`` (None when the split has none)."""
        for dataset in (stats if stats is not None else self.load()).datasets:
            if dataset.name == split:
                return dataset
        return None

    def summary(self) -> dict[str, Any]:
        return json.loads(self.file("summary").read_text())


class Schema(ArtifactType):
    """SchemaGen's output: the TFDV ``Schema`` inferred from train and eval's anomalies against it."""

    TYPE_NAME = "Schema"
    FILES = {"schema": "schema.pbtxt", "anomalies": "anomalies.json", "anomalies_proto": "anomalies.pbtxt"}

    def load(self) -> schema_pb2.Schema:
        from google.protobuf import text_format
        from tensorflow_metadata.proto.v0 import schema_pb2

        return text_format.Parse(self.file("schema").read_text(), schema_pb2.Schema())

    def anomalies(self) -> list[dict[str, Any]]:
        """``{"feature", "kind", "severity", "description"}`` each, errors first."""
        return json.loads(self.file("anomalies").read_text())


class TransformGraph(ArtifactType):
    """Transform's output: ``transform.json`` (every learnt number) and ``vocab/<input name>.txt``."""

    TYPE_NAME = "TransformGraph"
    FILES = {"transform": "transform.json", "vocabularies": "vocab/*.txt"}
    OPTIONAL = ("vocabularies",)

    def load(self) -> TransformArtifact:
        from ml_pipeline.model.transform import TransformArtifact

        return TransformArtifact.load(self.path)


class Model(ArtifactType):
    """The Trainer's output: the Keras models (raw inputs in, the transform inside), per-epoch history and a
    summary (devices, epochs, parameter counts)."""

    TYPE_NAME = "Model"
    FILES = {
        "query": "query_model.keras",
        "candidate": "candidate_model.keras",
        "rating": "rating_model.keras",
        "history": "history.json",
        "summary": "trainer_summary.json",
    }
    OPTIONAL = ("rating",)  # ranking and multitask models only

    def load(self) -> TrainedModels:
        """The query, candidate and (with a rating head) rating Keras models."""
        from ml_pipeline.model import load_trained

        return load_trained(self.path)

    @property
    def has_rating(self) -> bool:
        return self.file("rating").is_file()

    def history(self) -> list[dict[str, Any]]:
        return json.loads(self.file("history").read_text())


class ModelEvaluation(ArtifactType):
    """The Evaluator's output: ``evaluation.json`` (the candidate beside its baselines) and
    ``blessing.json`` (the verdict and the rules that decided it)."""

    TYPE_NAME = "ModelEvaluation"
    FILES = {"evaluation": "evaluation.json", "blessing": "blessing.json"}

    def evaluation(self) -> dict[str, Any]:
        return json.loads(self.file("evaluation").read_text())

    def blessing(self) -> Blessing:
        from ml_pipeline.blessing import Blessing

        return Blessing.load(self.file("blessing"))


class PushedModel(ArtifactType):
    """The Pusher's output: the serving SavedModel (:mod:`ml_pipeline.serving.export`)."""

    TYPE_NAME = "PushedModel"
    FILES = {"serving_model": "serving_model/saved_model.pb"}

    @property
    def serving_model_path(self) -> Path:
        return self.path / "serving_model"
