"""Where interaction data comes from and how it is read.

A dataset is a *source* (file, SQL query, BigQuery), a *column mapping* onto
the roles every recommender needs (buyer, product, timestamp, optional
target) plus extra feature columns, and *filters*. Columns produced by the
mapping use canonical names for the roles (``buyer_id``, ``product_id``,
``timestamp``, ``target``) and keep their source names for features; feature
configs refer to those output names.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ml_pipeline.errors import UNION_FIELDS, UNION_TAGS

ROLE_COLUMNS = ("buyer_id", "product_id", "timestamp", "target")
SQL_ENGINES = ("duckdb", "sqlite", "postgres")


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


CSV_ENCODINGS = ("utf-8", "utf-16", "latin-1")


class CsvOptions(StrictModel):
    """How a CSV file is written, when DuckDB's sniffer cannot tell (null: detect it)."""

    encoding: Literal[CSV_ENCODINGS] = Field(  # type: ignore[valid-type]
        default="utf-8", description="The file's character encoding (latin-1 also reads Windows-1252 letters)"
    )
    delimiter: str | None = Field(
        default=None, min_length=1, max_length=4, description="The column separator, e.g. ',' ';' '|' or a tab"
    )
    quote: str | None = Field(default=None, min_length=1, max_length=1, description="The quote character")
    header: bool | None = Field(default=None, description="Whether the first line names the columns")

    @field_validator("delimiter", "quote", mode="before")
    @classmethod
    def _tab(cls, value):
        # "\t" as typed in a form field means the tab character; whitespace must not be stripped away.
        return "\t" if value in ("\\t", "tab") else value

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="after")
    def _delimiter_is_not_the_quote(self) -> CsvOptions:
        if self.delimiter is not None and self.quote is not None and self.quote in self.delimiter:
            raise ValueError("quote: must differ from the delimiter")
        return self


class FileSource(StrictModel):
    """A CSV or Parquet file, or a folder of them, on a path the worker can read."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvOptions = Field(default_factory=CsvOptions, description="How CSV files are read (ignored for Parquet)")

    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        lowered = self.path.lower().rstrip("/")
        if lowered.endswith((".csv", ".csv.gz", ".tsv")):
            return "csv"
        return "parquet"


class SqlSource(StrictModel):
    """A read-only query against a DuckDB, SQLite or PostgreSQL database."""

    kind: Literal["sql"] = "sql"
    engine: Literal[SQL_ENGINES]  # type: ignore[valid-type]
    database: str = Field(min_length=1, description="File path (DuckDB, SQLite) or postgresql:// URL")
    query: str = Field(min_length=1)

    @field_validator("query")
    @classmethod
    def _single_select(cls, query: str) -> str:
        body = query.strip().rstrip(";").strip()
        if ";" in body:
            raise ValueError("must be a single statement")
        if not re.match(r"(?is)^(select|with)\b", body):
            raise ValueError("must be a SELECT (or WITH ... SELECT) query")
        return body

    @model_validator(mode="after")
    def _database_matches_engine(self) -> SqlSource:
        is_url = self.database.startswith(("postgres://", "postgresql://"))
        if self.engine == "postgres" and not is_url:
            raise ValueError("database: a postgres source needs a postgresql:// URL")
        if self.engine != "postgres" and is_url:
            raise ValueError(f"database: a {self.engine} source needs a file path, not a URL")
        return self


_BQ_TABLE = re.compile(r"^(?:[a-z][a-z0-9-]{4,29}\.)?[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_$-]{1,1024}$")


class BigQuerySource(StrictModel):
    """A BigQuery table or query. Stored and validated here; read by the scale path."""

    kind: Literal["bigquery"] = "bigquery"
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,29}$")
    table: str | None = None
    query: str | None = None
    location: str = "US"

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str | None) -> str | None:
        if table is not None and not _BQ_TABLE.match(table):
            raise ValueError("must look like dataset.table or project.dataset.table")
        return table

    @model_validator(mode="after")
    def _table_xor_query(self) -> BigQuerySource:
        if bool(self.table) == bool(self.query):
            raise ValueError("give exactly one of table or query")
        return self


Source = Annotated[FileSource | SqlSource | BigQuerySource, Field(discriminator="kind")]
UNION_TAGS.update({"file", "sql", "bigquery"})
UNION_FIELDS.add("source")


class FeatureColumn(StrictModel):
    column: str = Field(min_length=1)
    dtype: Literal["string", "int", "float", "timestamp"] = "string"


# Values of an id column that mean "no id" in the files people export (blank and whitespace-only always do).
DEFAULT_MISSING_IDS = ("NA", "N/A", "null", "NULL", "nan")
TIMESTAMP_UNITS = ("auto", "seconds", "milliseconds")


class ColumnMapping(StrictModel):
    """Source columns for each role, plus extra buyer and product feature columns."""

    buyer_id: str = Field(min_length=1)
    product_id: str = Field(min_length=1)
    timestamp: str | None = None
    target: str | None = None
    buyer_features: list[FeatureColumn] = []
    product_features: list[FeatureColumn] = []
    missing_ids: list[str] = Field(
        default=list(DEFAULT_MISSING_IDS),
        max_length=100,
        description="Buyer and product id values that mean 'no id' (compared after trimming, case-sensitive); "
        "blank and whitespace-only ids are always missing. Rows without a buyer or product id are dropped "
        "and counted in the preview.",
    )
    timestamp_unit: Literal[TIMESTAMP_UNITS] = Field(  # type: ignore[valid-type]
        default="auto",
        description="For a numeric timestamp column: Unix seconds or milliseconds ('auto': by magnitude)",
    )
    timestamp_format: str | None = Field(
        default=None,
        max_length=100,
        description="For a text timestamp column: its strptime format, e.g. '%d/%m/%Y %H:%M' "
        "(null: ISO 8601 and what DuckDB recognises)",
    )

    @model_validator(mode="after")
    def _no_collisions(self) -> ColumnMapping:
        seen: dict[str, str] = {}
        roles = {"buyer_id": self.buyer_id, "product_id": self.product_id}
        if self.timestamp:
            roles["timestamp"] = self.timestamp
        if self.target:
            roles["target"] = self.target
        for role, column in roles.items():
            if column in seen:
                raise ValueError(f"{role}: column '{column}' is already mapped as {seen[column]}")
            seen[column] = role
        for group in ("buyer_features", "product_features"):
            for index, feature in enumerate(getattr(self, group)):
                where = f"{group}[{index}].column"
                if feature.column in seen:
                    raise ValueError(f"{where}: column '{feature.column}' is already mapped as {seen[feature.column]}")
                if feature.column in ROLE_COLUMNS:
                    raise ValueError(
                        f"{where}: '{feature.column}' is a reserved output name; map it to its role instead"
                    )
                seen[feature.column] = group
        return self

    def output_columns(self) -> dict[str, str]:
        """Output column name -> declared type, as the mapped rows will have them."""
        columns = {"buyer_id": "string", "product_id": "string"}
        if self.timestamp:
            columns["timestamp"] = "timestamp"
        if self.target:
            columns["target"] = "float"
        for feature in [*self.buyer_features, *self.product_features]:
            columns[feature.column] = feature.dtype
        return columns

    def source_columns(self) -> dict[str, str]:
        """Field path -> source column, for every column the mapping reads."""
        columns = {"buyer_id": self.buyer_id, "product_id": self.product_id}
        if self.timestamp:
            columns["timestamp"] = self.timestamp
        if self.target:
            columns["target"] = self.target
        for group in ("buyer_features", "product_features"):
            for index, feature in enumerate(getattr(self, group)):
                columns[f"{group}[{index}].column"] = feature.column
        return columns


FilterOp = Literal[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "starts_with", "not_starts_with", "is_null", "not_null"
]


class Condition(StrictModel):
    """A row condition on one source column (a customer attribute, a product category, ...)."""

    column: str = Field(min_length=1)
    op: FilterOp
    value: str | float | int | bool | list[str | float | int] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in ("is_null", "not_null"):
            if self.value is not None:
                raise ValueError(f"value: '{self.op}' takes no value")
        elif self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"value: '{self.op}' needs a non-empty list")
        elif self.value is None or isinstance(self.value, list):
            raise ValueError(f"value: '{self.op}' needs a single value")
        elif self.op in ("starts_with", "not_starts_with") and not isinstance(self.value, str):
            raise ValueError(f"value: '{self.op}' needs a string")
        return self


class Filters(StrictModel):
    """Which rows of the source to keep."""

    date_from: date | None = None
    date_to: date | None = None
    last_days: int | None = Field(default=None, ge=1, le=36500)
    include_buyers: list[str] = []
    exclude_buyers: list[str] = []
    conditions: list[Condition] = []

    @model_validator(mode="after")
    def _consistent_dates(self) -> Filters:
        if self.last_days and (self.date_from or self.date_to):
            raise ValueError("last_days: use either last_days or date_from/date_to, not both")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_to: must not be before date_from")
        overlap = set(self.include_buyers) & set(self.exclude_buyers)
        if overlap:
            raise ValueError(f"exclude_buyers: {sorted(overlap)[:5]} are also in include_buyers")
        return self

    def uses_dates(self) -> bool:
        return bool(self.date_from or self.date_to or self.last_days)


class DatasetConfig(StrictModel):
    """Everything needed to read a dataset's rows: source + mapping + filters."""

    source: Source
    mapping: ColumnMapping
    filters: Filters = Filters()
    # The instant the data is read as of: a scheduled run's scheduled time, set by the platform, so a
    # relative window is (as_of - N days, as_of] and a time_holdout split's holdout days end there whenever
    # the run gets to it; no row after it is read. None: both end at the newest row. Naive UTC (the rows'
    # timestamps are), and only with last_days or a time_holdout split (PipelineSpec checks the latter), so
    # it is in the cache key exactly when it changes the examples.
    as_of: datetime | None = None

    @field_validator("as_of")
    @classmethod
    def _naive_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    @model_validator(mode="after")
    def _dates_need_timestamp(self) -> DatasetConfig:
        if self.filters.uses_dates() and not self.mapping.timestamp:
            raise ValueError("filters: date filters need mapping.timestamp")
        if self.as_of is not None and not self.mapping.timestamp:
            raise ValueError("as_of: the data is read as of a time only with mapping.timestamp")
        return self
