"""Datasets through the API: create with a mapping, preview counts, validation naming the field."""

import sqlite3

import duckdb
import pytest

from tests.helpers import api_client_for, errors_by_field


def test_it_creates_a_dataset_and_previews_the_mapped_rows(dataset):
    preview = dataset["preview"]
    # 7 rows: the row without a customer is dropped; the cancellation is kept (no filter yet).
    assert preview["source_rows"] == 7
    assert preview["rows"] == 6
    assert preview["dropped_rows"] == 1
    assert preview["buyers"] == 3
    assert preview["products"] == 3
    assert preview["first_timestamp"] == "2025-01-01T10:00:00"
    assert preview["last_timestamp"] == "2025-02-02T09:00:00"
    assert dataset["summary"] == "6 rows | 3 users | 3 products | 32 days"
    assert [c["name"] for c in preview["columns"]] == [
        "buyer_id",
        "product_id",
        "timestamp",
        "target",
        "segment",
        "category",
    ]
    assert preview["sample"][0] == {
        "buyer_id": "c1",
        "product_id": "p1",
        "timestamp": "2025-01-01T10:00:00",
        "target": 2.0,
        "segment": "retail",
        "category": "tools",
    }


def test_it_applies_filters_to_the_preview(api, dataset):
    response = api.patch(
        f"/api/datasets/{dataset['id']}/",
        {
            "filters": {
                "conditions": [{"column": "order_id", "op": "not_starts_with", "value": "C"}],
                "date_from": "2025-01-02",
                "exclude_buyers": ["c3"],
            }
        },
    )
    assert response.status_code == 200, response.content
    preview = response.json()["preview"]
    assert preview["rows"] == 3  # c1/p2, c2/p1, c2/p3
    assert preview["buyers"] == 2


def test_it_keeps_only_the_last_days_relative_to_the_newest_row(api, dataset):
    response = api.patch(f"/api/datasets/{dataset['id']}/", {"filters": {"last_days": 5}})
    assert response.json()["preview"]["rows"] == 2  # 2025-02-01 and 2025-02-02


def test_it_names_a_misspelled_column_and_suggests_the_right_one(api, project, purchases_csv, purchases_mapping):
    mapping = {**purchases_mapping, "buyer_id": "Customer"}
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "bad", "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": mapping},
    )
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "mapping.buyer_id": "column 'Customer' is not in the source (did you mean 'customer'?)"
    }


def test_it_rejects_a_column_whose_type_cannot_be_read_as_declared(api, project, purchases_csv, purchases_mapping):
    mapping = {**purchases_mapping, "product_features": [{"column": "category", "dtype": "float"}]}
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "bad", "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": mapping},
    )
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "mapping.product_features[0].column": "column 'category' is VARCHAR, which cannot be read as float"
    }


def test_it_names_every_bad_field_of_the_request_shape(api, project):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "",
            "source": {"kind": "sql", "engine": "oracle", "database": "x", "query": "select 1"},
            "mapping": {"product_id": "p"},
        },
    )
    assert response.status_code == 422
    fields = errors_by_field(response)
    assert "name" in fields
    assert "source.engine" in fields
    assert "mapping.buyer_id" in fields


@pytest.mark.parametrize(
    "filters, field, message",
    [
        (
            {"last_days": 3, "date_from": "2025-01-01"},
            "filters.last_days",
            "use either last_days or date_from/date_to, not both",
        ),
        ({"date_from": "2025-02-01", "date_to": "2025-01-01"}, "filters.date_to", "must not be before date_from"),
        (
            {"conditions": [{"column": "qty", "op": "in", "value": 3}]},
            "filters.conditions[0].value",
            "'in' needs a non-empty list",
        ),
        (
            {"conditions": [{"column": "qty", "op": "is_null", "value": 3}]},
            "filters.conditions[0].value",
            "'is_null' takes no value",
        ),
        (
            {"conditions": [{"column": "Qty", "op": "gt", "value": 0}]},
            "filters.conditions[0].column",
            "column 'Qty' is not in the source (did you mean 'qty'?)",
        ),
        (
            {"include_buyers": ["c1"], "exclude_buyers": ["c1"]},
            "filters.exclude_buyers",
            "['c1'] are also in include_buyers",
        ),
    ],
)
def test_each_filter_rule_names_its_field(api, project, purchases_csv, purchases_mapping, filters, field, message):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "f",
            "source": {"kind": "file", "path": str(purchases_csv)},
            "mapping": purchases_mapping,
            "filters": filters,
        },
    )
    assert response.status_code == 422, response.content
    assert errors_by_field(response) == {field: message}


@pytest.mark.parametrize(
    "mapping_change, field, message",
    [
        ({"product_id": "customer"}, "mapping.product_id", "column 'customer' is already mapped as buyer_id"),
        (
            {"buyer_features": [{"column": "target"}]},
            "mapping.buyer_features[0].column",
            "'target' is a reserved output name; map it to its role instead",
        ),
        (
            {"buyer_features": [{"column": "segment", "dtype": "decimal"}]},
            "mapping.buyer_features[0].dtype",
            "Input should be 'string', 'int', 'float' or 'timestamp'",
        ),
    ],
)
def test_each_mapping_rule_names_its_field(
    api, project, purchases_csv, purchases_mapping, mapping_change, field, message
):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "m",
            "source": {"kind": "file", "path": str(purchases_csv)},
            "mapping": {**purchases_mapping, **mapping_change},
        },
    )
    assert response.status_code == 422, response.content
    assert errors_by_field(response) == {field: message}


def test_date_filters_need_a_timestamp_column(api, project, purchases_csv, purchases_mapping):
    mapping = {k: v for k, v in purchases_mapping.items() if k != "timestamp"}
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "d",
            "source": {"kind": "file", "path": str(purchases_csv)},
            "mapping": mapping,
            "filters": {"last_days": 7},
        },
    )
    assert errors_by_field(response) == {"filters": "date filters need mapping.timestamp"}


def test_a_file_outside_the_allowed_folders_is_refused(api, project, tmp_path, purchases_mapping):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("customer,item\nc1,p1\n")
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "x",
            "source": {"kind": "file", "path": str(outside)},
            "mapping": {"buyer_id": "customer", "product_id": "item"},
        },
    )
    assert response.status_code == 422
    assert "is not readable by this project" in errors_by_field(response)["source.path"]


def test_a_missing_file_is_named(api, project, data_dir, purchases_mapping):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "x", "source": {"kind": "file", "path": str(data_dir / "nope.csv")}, "mapping": purchases_mapping},
    )
    assert response.status_code == 422
    assert errors_by_field(response)["source.path"].endswith("nope.csv' does not exist")


def test_names_are_unique_within_a_project(api, project, dataset, purchases_csv, purchases_mapping):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "purchases", "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": purchases_mapping},
    )
    assert response.status_code == 409
    assert errors_by_field(response) == {"name": "a dataset named 'purchases' already exists in this project"}


def test_it_reads_a_sqlite_query(api, project, data_dir):
    db_path = data_dir / "shop.sqlite"
    with sqlite3.connect(db_path) as con:
        con.execute("CREATE TABLE orders (cust INTEGER, sku TEXT, amount REAL)")
        con.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(1, "a", 1.0), (1, "b", 2.0), (2, "a", 3.0), (3, "c", -1)]
        )
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "sqlite",
            "source": {
                "kind": "sql",
                "engine": "sqlite",
                "database": str(db_path),
                "query": "SELECT * FROM orders WHERE amount > 0",
            },
            "mapping": {"buyer_id": "cust", "product_id": "sku", "target": "amount"},
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["summary"] == "3 rows | 2 users | 2 products"


def test_it_reads_a_duckdb_query_and_a_parquet_folder(api, project, data_dir):
    db_path = data_dir / "shop.duckdb"
    with duckdb.connect(str(db_path)) as con:
        con.execute("CREATE TABLE orders AS SELECT i % 10 AS cust, 'p' || (i % 7) AS sku FROM range(100) t(i)")
        (data_dir / "parts").mkdir(exist_ok=True)
        con.execute(f"COPY (SELECT * FROM orders WHERE cust < 5) TO '{data_dir / 'parts' / 'a.parquet'}'")
        con.execute(f"COPY (SELECT * FROM orders WHERE cust >= 5) TO '{data_dir / 'parts' / 'b.parquet'}'")
    mapping = {"buyer_id": "cust", "product_id": "sku"}
    from_db = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "duck",
            "source": {"kind": "sql", "engine": "duckdb", "database": str(db_path), "query": "SELECT * FROM orders"},
            "mapping": mapping,
        },
    )
    from_folder = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "folder", "source": {"kind": "file", "path": str(data_dir / "parts")}, "mapping": mapping},
    )
    assert from_db.json()["summary"] == from_folder.json()["summary"] == "100 rows | 10 users | 7 products"


def test_a_sql_source_must_be_one_select(api, project, data_dir):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "s",
            "source": {
                "kind": "sql",
                "engine": "sqlite",
                "database": str(data_dir / "x.db"),
                "query": "DROP TABLE orders",
            },
            "mapping": {"buyer_id": "a", "product_id": "b"},
        },
    )
    assert errors_by_field(response) == {"source.query": "must be a SELECT (or WITH ... SELECT) query"}


def test_a_bigquery_source_is_validated_and_stored_without_reading(api, project):
    base = {"name": "bq", "mapping": {"buyer_id": "customer_id", "product_id": "sku"}}
    bad = api.post(
        f"/api/projects/{project.id}/datasets/",
        {**base, "source": {"kind": "bigquery", "project": "my-gcp-proj", "table": "not a table"}},
    )
    assert errors_by_field(bad) == {"source.table": "must look like dataset.table or project.dataset.table"}
    both = api.post(
        f"/api/projects/{project.id}/datasets/", {**base, "source": {"kind": "bigquery", "project": "my-gcp-proj"}}
    )
    assert errors_by_field(both) == {"source": "give exactly one of table or query"}
    good = api.post(
        f"/api/projects/{project.id}/datasets/",
        {**base, "source": {"kind": "bigquery", "project": "my-gcp-proj", "table": "sales.orders"}},
    )
    assert good.status_code == 201, good.content
    assert good.json()["preview"] is None
    assert "BigQuery" in good.json()["preview_error"]


def test_an_uploaded_csv_becomes_a_dataset_source(api, project, purchases_csv, purchases_mapping):
    upload = api.upload(f"/api/projects/{project.id}/uploads/", purchases_csv)
    assert upload.status_code == 201, upload.content
    assert {"name": "qty", "type": "BIGINT"} in upload.json()["columns"]
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "uploaded",
            "source": {"kind": "upload", "upload_id": upload.json()["id"]},
            "mapping": purchases_mapping,
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["preview"]["rows"] == 6


def test_an_upload_of_another_project_cannot_be_used(
    api, project, oscar, oscars_project, purchases_csv, purchases_mapping
):
    oscars_upload = api_client_for(oscar).upload(f"/api/projects/{oscars_project.id}/uploads/", purchases_csv)
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "stolen",
            "source": {"kind": "upload", "upload_id": oscars_upload.json()["id"]},
            "mapping": purchases_mapping,
        },
    )
    assert errors_by_field(response) == {"source.upload_id": f"no upload {oscars_upload.json()['id']} in this project"}


def test_an_upload_must_be_csv_or_parquet(api, project, data_dir):
    bad = data_dir / "notes.txt"
    bad.write_text("hello")
    response = api.upload(f"/api/projects/{project.id}/uploads/", bad)
    assert response.status_code == 422
    assert errors_by_field(response) == {"file": "'notes.txt' is not a .csv or .parquet file"}


def test_refreshing_the_preview_reads_the_source_again(api, dataset, purchases_csv):
    with open(purchases_csv, "a") as handle:
        handle.write("8,c4,p4,2025-02-05 09:00:00,1,retail,tools\n")
    assert api.get(f"/api/datasets/{dataset['id']}/preview/").json()["preview"]["rows"] == 6
    refreshed = api.post(f"/api/datasets/{dataset['id']}/preview/").json()
    assert refreshed["preview"]["rows"] == 7
    assert refreshed["preview"]["buyers"] == 4


def test_an_empty_result_after_filters_previews_as_zero_rows(api, dataset):
    response = api.patch(f"/api/datasets/{dataset['id']}/", {"filters": {"include_buyers": ["nobody"]}})
    assert response.json()["preview"]["rows"] == 0
    assert response.json()["summary"] == "0 rows | 0 users | 0 products"


def test_deleting_a_dataset(api, dataset):
    assert api.delete(f"/api/datasets/{dataset['id']}/").status_code == 204
    assert api.get(f"/api/datasets/{dataset['id']}/").status_code == 404
