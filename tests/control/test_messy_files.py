"""Real files read as their owner means them: missing ids, float ids, typed filter values, timestamps of every
spelling, and files that cannot be read refused in words, with nothing half-made left behind."""

import csv
from datetime import UTC, datetime

import pytest

from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset
from tests.helpers import RETAIL_CSV, RETAIL_MAPPING, SHARED_DATASETS, errors_by_field

MOVIELENS_RATINGS = SHARED_DATASETS / "ml-latest-small" / "ratings.csv"
needs_retail = pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset absent: {RETAIL_CSV}")


def create(api, project, path, mapping, filters=None, name="messy", **source):
    """A dataset on a file: read in place under the allowed folders, uploaded from the shared datasets."""
    if path.is_relative_to(SHARED_DATASETS):
        upload = api.upload(f"/api/projects/{project.id}/uploads/", path)
        assert upload.status_code == 201, upload.content
        source = {"kind": "upload", "upload_id": upload.json()["id"], **source}
    else:
        source = {"kind": "file", "path": str(path), **source}
    body = {"name": name, "source": source, "mapping": mapping}
    if filters is not None:
        body["filters"] = filters
    return api.post(f"/api/projects/{project.id}/datasets/", body)


def write_csv(path, header, rows, quoting=csv.QUOTE_MINIMAL):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=quoting)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def retail_with_na(data_dir):
    """The retail sample as its other extract writes it: every value quoted, no customer written NA, blank or
    a space (where the sample has its placeholder "0.0")."""
    with open(RETAIL_CSV, newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    column = header.index("CustomerID")
    for index, row in enumerate(r for r in rows if r[column] == "0.0"):
        row[column] = ["NA", "", " "][index % 3]
    return write_csv(data_dir / "retail_na.csv", header, rows, quoting=csv.QUOTE_ALL)


def counted(path) -> dict:
    """The expected numbers, the slow obvious way."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with_buyer = [r for r in rows if r["CustomerID"].strip() not in ("", "NA")]
    return {
        "without_buyer": len(rows) - len(with_buyer),
        "rows": len(with_buyer),
        "buyers": {str(int(float(r["CustomerID"]))) for r in with_buyer},
    }


@needs_retail
def test_na_and_blank_buyer_ids_are_dropped_and_counted_not_made_a_buyer(api, project, retail_with_na):
    response = create(api, project, retail_with_na, RETAIL_MAPPING)
    assert response.status_code == 201, response.content
    preview, expected = response.json()["preview"], counted(retail_with_na)
    assert preview["rows"] == expected["rows"]
    assert preview["buyers"] == len(expected["buyers"])
    assert preview["dropped"] == [
        {
            "reason": "no_buyer_id",
            "rows": expected["without_buyer"],
            "message": f"{expected['without_buyer']:,} rows without a buyer id",
        }
    ]
    assert {row["buyer_id"] for row in preview["sample"]} <= expected["buyers"]


@needs_retail
def test_the_preview_warns_when_many_rows_have_no_buyer(api, project, retail_with_na):
    warnings = create(api, project, retail_with_na, RETAIL_MAPPING).json()["preview"]["warnings"]
    assert warnings == [
        "39% of the rows have no buyer id in 'CustomerID' (blank or one of: NA, N/A, null, NULL, nan) and are left out"
    ]


@needs_retail
def test_the_preview_warns_of_one_buyer_holding_a_large_share(api, project):
    warnings = create(api, project, RETAIL_CSV, RETAIL_MAPPING).json()["preview"]["warnings"]
    assert warnings == [
        "buyer '0' holds 39% of the rows: if it stands for a missing id, add it to the mapping's missing_ids"
    ]


@needs_retail
def test_the_missing_id_values_are_chosen_per_dataset(api, project):
    response = create(api, project, RETAIL_CSV, {**RETAIL_MAPPING, "missing_ids": ["0"]})
    assert response.status_code == 201, response.content
    assert response.json()["preview"]["dropped"] == [
        {"reason": "no_buyer_id", "rows": 1884, "message": "1,884 rows without a buyer id"}
    ]
    assert response.json()["mapping"]["missing_ids"] == ["0"]


def test_every_default_missing_spelling_is_missing(api, project, data_dir):
    spellings = ["NA", "N/A", "null", "NULL", "nan", "", "   ", "\t"]
    path = write_csv(data_dir / "spellings.csv", ["who", "what"], [[s, "p1"] for s in spellings] + [["c1", "p1"]])
    preview = create(api, project, path, {"buyer_id": "who", "product_id": "what"}).json()["preview"]
    assert (preview["rows"], preview["buyers"]) == (1, 1)
    assert preview["dropped"][0]["rows"] == len(spellings)


def test_a_missing_product_id_is_its_own_line(api, project, data_dir):
    path = write_csv(data_dir / "no_product.csv", ["who", "what"], [["c1", "NA"], ["NA", "NA"], ["c2", "p1"]])
    preview = create(api, project, path, {"buyer_id": "who", "product_id": "what"}).json()["preview"]
    assert [(d["reason"], d["rows"]) for d in preview["dropped"]] == [("no_buyer_id", 1), ("no_product_id", 1)]


def test_whole_number_float_ids_written_as_text_read_as_integers(api, project, data_dir):
    rows = [["17850.0", "85123A"], ["NA", "71053"], ["13047.0", "84406B"], ["12.5", "22752"]]
    path = write_csv(data_dir / "float_ids.csv", ["CustomerID", "StockCode"], rows, quoting=csv.QUOTE_ALL)
    preview = create(api, project, path, {"buyer_id": "CustomerID", "product_id": "StockCode"}).json()["preview"]
    assert [row["buyer_id"] for row in preview["sample"]] == ["17850", "13047", "12.5"]


def test_the_filters_left_out_are_counted_apart_from_missing_ids(api, project, purchases_csv, purchases_mapping):
    filters = {"conditions": [{"column": "order_id", "op": "not_starts_with", "value": "C"}]}
    preview = create(api, project, purchases_csv, purchases_mapping, filters).json()["preview"]
    assert preview["dropped"] == [
        {"reason": "no_buyer_id", "rows": 1, "message": "1 row without a buyer id"},
        {"reason": "filters", "rows": 1, "message": "1 row left out by the filters"},
    ]


# --------------------------------------------------------------------------- filter values and atomic saves


@pytest.mark.parametrize(
    "condition, message",
    [
        ({"column": "qty", "op": "gt", "value": "abc"}, "'abc' is not a number, and column 'qty' is BIGINT"),
        ({"column": "qty", "op": "in", "value": [1, "two"]}, "'two' is not a number, and column 'qty' is BIGINT"),
        (
            {"column": "ordered_at", "op": "gte", "value": "soon"},
            "'soon' is not a date or time (write it as 2011-01-31 or 2011-01-31 09:30), "
            "and column 'ordered_at' is TIMESTAMP",
        ),
    ],
)
def test_a_filter_value_that_does_not_fit_its_column_is_refused_and_nothing_is_saved(
    api, project, purchases_csv, purchases_mapping, condition, message
):
    before = (Dataset.objects.count(), AuditEvent.objects.count())
    response = create(api, project, purchases_csv, purchases_mapping, {"conditions": [condition]})
    assert errors_by_field(response, 422) == {"filters.conditions[0].value": message}
    assert (Dataset.objects.count(), AuditEvent.objects.count()) == before


def test_numbers_written_as_text_still_filter_a_numeric_column(api, project, purchases_csv, purchases_mapping):
    response = create(
        api, project, purchases_csv, purchases_mapping, {"conditions": [{"column": "qty", "op": "gt", "value": "2"}]}
    )
    assert response.status_code == 201, response.content
    assert response.json()["preview"]["rows"] == 2  # qty 5 and 3


def test_a_number_filters_a_text_column_as_text(api, project, purchases_csv, purchases_mapping):
    conditions = [{"column": "order_id", "op": "in", "value": [1, 2]}]
    response = create(api, project, purchases_csv, purchases_mapping, {"conditions": conditions})
    assert response.status_code == 201, response.content
    assert response.json()["preview"]["rows"] == 2


def test_a_patch_with_a_bad_filter_value_changes_nothing(api, dataset):
    stored = Dataset.objects.get(pk=dataset["id"])
    response = api.patch(
        f"/api/datasets/{dataset['id']}/",
        {"name": "renamed", "filters": {"conditions": [{"column": "qty", "op": "lt", "value": "abc"}]}},
    )
    assert errors_by_field(response, 422) == {
        "filters.conditions[0].value": "'abc' is not a number, and column 'qty' is BIGINT"
    }
    after = Dataset.objects.get(pk=dataset["id"])
    assert (after.name, after.filters, after.preview, after.updated_at) == (
        stored.name,
        stored.filters,
        stored.preview,
        stored.updated_at,
    )


def test_a_patch_the_data_refuses_changes_nothing(api, dataset):
    stored = Dataset.objects.get(pk=dataset["id"])
    response = api.patch(
        f"/api/datasets/{dataset['id']}/",
        {"mapping": {"buyer_id": "customer", "product_id": "item", "timestamp": "segment"}},
    )
    assert list(errors_by_field(response, 422)) == ["mapping.timestamp"]
    assert Dataset.objects.get(pk=dataset["id"]).mapping == stored.mapping


# --------------------------------------------------------------------------- timestamps


def test_a_text_column_mapped_as_the_timestamp_is_refused_with_a_sample_value(
    api, project, purchases_csv, purchases_mapping
):
    before = Dataset.objects.count()
    response = create(
        api, project, purchases_csv, {**purchases_mapping, "timestamp": "category", "product_features": []}
    )
    assert errors_by_field(response, 422) == {
        "mapping.timestamp": "column 'category' is text that does not read as timestamps (e.g. 'tools'); "
        "if it is a date written another way, give timestamp_format (e.g. '%d/%m/%Y %H:%M')"
    }
    assert Dataset.objects.count() == before


@pytest.fixture
def dates_as_text(data_dir):
    """Day-first dates, and one that is no date: DuckDB keeps the column as text."""
    rows = [["c1", "p1", "31/01/2025 10:00"], ["c2", "p1", "01/02/2025 09:30"], ["c3", "p2", "unknown"]]
    return write_csv(data_dir / "dmy.csv", ["who", "what", "when"], rows)


def test_a_timestamp_format_reads_dates_written_another_way(api, project, dates_as_text):
    mapping = {"buyer_id": "who", "product_id": "what", "timestamp": "when", "timestamp_format": "%d/%m/%Y %H:%M"}
    preview = create(api, project, dates_as_text, mapping).json()["preview"]
    assert (preview["first_timestamp"], preview["last_timestamp"]) == ("2025-01-31T10:00:00", "2025-02-01T09:30:00")
    assert preview["dropped"] == [
        {"reason": "no_timestamp", "rows": 1, "message": "1 row without a readable timestamp"}
    ]


def test_a_timestamp_format_the_dates_do_not_match_is_named(api, project, dates_as_text):
    mapping = {"buyer_id": "who", "product_id": "what", "timestamp": "when", "timestamp_format": "%Y-%m-%d"}
    response = create(api, project, dates_as_text, mapping)
    assert errors_by_field(response, 422) == {
        "mapping.timestamp_format": "values of 'when' such as '31/01/2025 10:00' do not match '%Y-%m-%d'"
    }


def test_a_timestamp_format_that_is_no_format_is_named(api, project, dates_as_text):
    mapping = {"buyer_id": "who", "product_id": "what", "timestamp": "when", "timestamp_format": "%Q"}
    assert errors_by_field(create(api, project, dates_as_text, mapping), 422) == {
        "mapping.timestamp_format": "'%Q' is not a strptime format"
    }


@pytest.mark.skipif(not MOVIELENS_RATINGS.exists(), reason=f"shared dataset absent: {MOVIELENS_RATINGS}")
def test_movielens_epoch_seconds_are_read_as_timestamps(api, project):
    with open(MOVIELENS_RATINGS, newline="") as handle:
        seconds = [int(row["timestamp"]) for row in csv.DictReader(handle)]
    mapping = {"buyer_id": "userId", "product_id": "movieId", "timestamp": "timestamp", "target": "rating"}
    response = create(api, project, MOVIELENS_RATINGS, mapping)
    assert response.status_code == 201, response.content
    preview = response.json()["preview"]
    as_time = [datetime.fromtimestamp(s, UTC).replace(tzinfo=None).isoformat() for s in (min(seconds), max(seconds))]
    assert [preview["first_timestamp"], preview["last_timestamp"]] == as_time
    assert preview["rows"] == len(seconds)


@pytest.mark.parametrize("unit, factor", [("auto", 1000), ("milliseconds", 1000), ("seconds", 1)])
def test_epoch_milliseconds_are_told_by_magnitude_or_named(api, project, data_dir, unit, factor):
    rows = [["c1", "p1", 1735725600 * factor], ["c2", "p2", 1735812000 * factor]]  # 2025-01-01 10:00, +1 day
    path = write_csv(data_dir / f"epoch_{unit}.csv", ["who", "what", "at"], rows)
    mapping = {"buyer_id": "who", "product_id": "what", "timestamp": "at", "timestamp_unit": unit}
    preview = create(api, project, path, mapping).json()["preview"]
    assert preview["first_timestamp"] == "2025-01-01T10:00:00"


def test_small_numbers_are_not_taken_for_timestamps(api, project, purchases_csv, purchases_mapping):
    response = create(api, project, purchases_csv, {**purchases_mapping, "timestamp": "qty", "target": None})
    assert errors_by_field(response, 422) == {
        "mapping.timestamp": "column 'qty' holds numbers such as 5, too small for Unix timestamps "
        "(set timestamp_unit to read them as seconds anyway)"
    }


# --------------------------------------------------------------------------- uploads and unreadable files


def upload_bytes(api, project, name: str, content: bytes, **options):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api.client.post(
        f"/api/projects/{project.id}/uploads/",
        {"file": SimpleUploadedFile(name, content), **options},
        **api.headers,
    )


@pytest.mark.parametrize(
    "name, content, field, message",
    [
        ("empty.csv", b"", "file", "the file is empty"),
        ("blank.csv", b"\n \n", "file", "the file is empty"),
        ("header.csv", b"customer,item,qty\n", "file", "the file has a header but no rows"),
        ("image.csv", bytes(range(256)) * 8, "file", "this is not a CSV or Parquet file"),
        ("text.parquet", b"customer,item\nc1,p1\n", "file", "this is not a CSV or Parquet file"),
        (
            "latin1.csv",
            "customer,item\nJosé,p1\nMüller,p2\n".encode("latin-1"),
            "encoding",
            "this file is not UTF-8: choose its encoding",
        ),
        (
            "spaces.csv",
            b"customer item\nc1 p1\nc2 p2\n",
            "delimiter",
            "could not find a delimiter: choose one (the first line reads as one column, 'customer item')",
        ),
    ],
)
def test_an_unusable_upload_is_refused_in_words_and_not_kept(api, project, settings, name, content, field, message):
    response = upload_bytes(api, project, name, content)
    assert errors_by_field(response, 422) == {field: message}
    assert project.uploads.count() == 0
    assert not list((settings.MEDIA_ROOT / "uploads").glob(f"project-{project.id}/{name.split('.')[0]}*"))


def test_a_csv_is_read_with_the_encoding_chosen(api, project):
    response = upload_bytes(
        api, project, "latin1.csv", "customer,item\nJosé,p1\nMüller,p2\n".encode("latin-1"), encoding="latin-1"
    )
    assert response.status_code == 201, response.content
    assert response.json()["csv_options"] == {"encoding": "latin-1", "delimiter": None, "quote": None, "header": None}
    created = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "latin",
            "source": {"kind": "upload", "upload_id": response.json()["id"]},
            "mapping": {"buyer_id": "customer", "product_id": "item"},
        },
    )
    assert created.status_code == 201, created.content
    assert created.json()["preview"]["sample"][0]["buyer_id"] == "José"


def test_a_csv_is_read_with_the_delimiter_and_header_chosen(api, project, data_dir):
    path = data_dir / "semicolons.csv"
    path.write_text("c1 ; p1 ; 2\nc2 ; p2 ; 3\n")
    response = create(
        api, project, path, {"buyer_id": "column0", "product_id": "column1"}, csv={"delimiter": ";", "header": False}
    )
    assert response.status_code == 201, response.content
    assert response.json()["summary"] == "2 rows | 2 users | 2 products"


def test_a_delimiter_chosen_that_is_not_in_the_file_is_named(api, project, purchases_csv, purchases_mapping):
    response = create(api, project, purchases_csv, purchases_mapping, csv={"delimiter": "|"})
    message = errors_by_field(response, 422)["source.csv.delimiter"]
    assert message.startswith("the delimiter '|' is not in the file (the first line reads as one column, 'order_id,")


def test_every_answer_names_its_request(api, project):
    first, second = api.get(f"/api/projects/{project.id}/"), api.get(f"/api/projects/{project.id}/")
    assert len(first["X-Request-ID"]) == 12
    assert first["X-Request-ID"] != second["X-Request-ID"]
