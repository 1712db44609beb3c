"""No error answer shows the server's data folder, the SQL the platform runs or DuckDB's hints; what DuckDB said
goes to the server log under the request's id, which the answer names."""

import logging
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.helpers import errors_by_field

INTERNALS = ("SELECT", "CREATE", "source_rows", "mapped_source", "LINE 1", "read_csv", "read_parquet", "Possible")
NOT_PARQUET = b"PAR1" + b"\x00garbage" * 8  # the magic at its start, nothing a Parquet reader can use


def upload(api, project, name: str, content: bytes):
    return api.client.post(
        f"/api/projects/{project.id}/uploads/", {"file": SimpleUploadedFile(name, content)}, **api.headers
    )


def assert_nothing_internal(response, settings):
    text = response.content.decode()
    assert response.status_code in (400, 409, 422), text
    assert str(settings.DATA_DIR) not in text
    assert str(settings.MEDIA_ROOT) not in text
    assert [word for word in INTERNALS if word in text] == [], text


@pytest.fixture
def uploaded(api, project, purchases_csv):
    response = api.upload(f"/api/projects/{project.id}/uploads/", purchases_csv)
    assert response.status_code == 201, response.content
    return response.json()


def test_no_refusal_shows_the_data_folder_or_sql(api, project, settings, data_dir, uploaded, purchases_mapping):
    """Every way of bringing a file or mapping the platform cannot use, each answered in words."""
    datasets = f"/api/projects/{project.id}/datasets/"
    from_upload = {"kind": "upload", "upload_id": uploaded["id"]}
    answers = [
        upload(api, project, "broken.parquet", NOT_PARQUET),
        upload(api, project, "binary.csv", bytes(range(256)) * 8),
        upload(api, project, "empty.csv", b""),
        upload(api, project, "latin1.csv", "a,b\nJosé,1\n".encode("latin-1")),
        api.post(
            datasets, {"name": "t", "source": from_upload, "mapping": {**purchases_mapping, "timestamp": "segment"}}
        ),
        api.post(
            datasets,
            {
                "name": "f",
                "source": from_upload,
                "mapping": purchases_mapping,
                "filters": {"conditions": [{"column": "qty", "op": "gt", "value": "abc"}]},
            },
        ),
        api.post(datasets, {"name": "m", "source": from_upload, "mapping": {**purchases_mapping, "buyer_id": "who"}}),
    ]
    (data_dir / "broken.parquet").write_bytes(NOT_PARQUET)
    answers.append(
        api.post(
            datasets,
            {
                "name": "p",
                "source": {"kind": "file", "path": str(data_dir / "broken.parquet")},
                "mapping": purchases_mapping,
            },
        )
    )
    for answer in answers:
        assert_nothing_internal(answer, settings)


def test_an_upload_whose_file_is_gone_is_named_without_its_server_path(
    api, project, settings, uploaded, purchases_mapping
):
    from ml_platform.datasets.models import Upload

    Upload.objects.get(pk=uploaded["id"]).file.delete(save=False)
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "gone", "source": {"kind": "upload", "upload_id": uploaded["id"]}, "mapping": purchases_mapping},
    )
    assert_nothing_internal(response, settings)
    assert errors_by_field(response) == {
        "source.upload_id": "the uploaded file is no longer on the server: upload it again"
    }


def test_a_stored_preview_error_shows_no_internals(api, settings, dataset, purchases_csv):
    purchases_csv.write_bytes(bytes(range(256)) * 8)
    refreshed = api.post(f"/api/datasets/{dataset['id']}/preview/").json()
    assert refreshed["preview"] is None
    assert refreshed["error"] == "source.path: this is not a CSV or Parquet file"


def test_what_duckdb_said_is_logged_under_the_request_id_the_answer_names(api, project, caplog):
    with caplog.at_level(logging.WARNING, logger="ml_platform.core.errors"):
        response = upload(api, project, "broken.parquet", NOT_PARQUET)
    message = errors_by_field(response, 422)["file"]
    request_id = response["X-Request-ID"]
    assert message == f"this is not a CSV or Parquet file (details in the server log, request {request_id})"
    logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1
    assert re.search(r"(?i)magic bytes|parquet", logged[0]) and "read_parquet" in logged[0]
