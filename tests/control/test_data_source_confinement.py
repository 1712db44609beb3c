"""A project's sources read only its own uploads and the administrator's allowed folders.

Each test is one way an attacker with an account (but no membership in the
victim's project) tried to read what is not theirs: the platform's database
(password hashes, session keys, webhook secrets), its secret key, MLflow's
store, another project's uploads, or any file through DuckDB's table
functions. Every attempt must be refused with a clear error naming the field,
and nothing may be read or saved.
"""

import os
import sqlite3
from pathlib import Path

import duckdb
import pytest
from django.conf import settings
from django.db import connection

from ml_pipeline.data.access import postgres_target
from ml_pipeline.redact import MASK
from ml_platform.datasets.access import data_access_for
from ml_platform.datasets.models import Dataset
from tests.helpers import api_client_for, errors_by_field

pytestmark = pytest.mark.django_db

MAPPING = {"buyer_id": "customer", "product_id": "item"}


def create(api, project, source: dict, mapping: dict = MAPPING):
    return api.post(f"/api/projects/{project.id}/datasets/", {"name": "loot", "source": source, "mapping": mapping})


def platform_database() -> Path:
    return Path(settings.DATABASES["default"]["NAME"])


@pytest.fixture
def duckdb_file(data_dir) -> Path:
    """An attacker's own DuckDB database in the allowed folder, so that the SQL source itself is legitimate."""
    path = data_dir / "own.duckdb"
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE purchases AS SELECT 'c1' AS customer, 'p1' AS item")
    return path


@pytest.fixture
def secret_file(data_dir) -> Path:
    """A file outside every allowed folder whose contents must never show up anywhere."""
    path = Path(settings.DATA_DIR) / "secret_key"
    assert path.exists()
    return path


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the platform's database is a file on SQLite")
def test_a_sqlite_source_cannot_read_the_platforms_database(api, project):
    response = create(
        api,
        project,
        {
            "kind": "sql",
            "engine": "sqlite",
            "database": str(platform_database()),
            "query": "SELECT session_key AS customer, session_data AS item FROM django_session",
        },
    )
    assert "is not readable by this project" in errors_by_field(response, 422)["source.database"]
    assert not Dataset.objects.filter(name="loot").exists()


def test_a_file_source_cannot_read_the_data_folder(api, project, secret_file):
    response = create(api, project, {"kind": "file", "path": str(secret_file), "format": "csv"})
    assert "is not readable by this project" in errors_by_field(response, 422)["source.path"]
    assert secret_file.read_text() not in response.content.decode()


def test_the_data_folder_stays_closed_when_an_allowed_root_contains_it(api, project, settings, secret_file):
    settings.DATASET_ALLOWED_ROOTS = [*settings.DATASET_ALLOWED_ROOTS, "/"]
    response = create(api, project, {"kind": "file", "path": str(secret_file), "format": "csv"})
    assert "is not readable by this project" in errors_by_field(response, 422)["source.path"]


def test_mlflows_store_is_not_readable(api, project, settings):
    settings.DATASET_ALLOWED_ROOTS = [*settings.DATASET_ALLOWED_ROOTS, "/"]
    mlflow_db = settings.MLFLOW_TRACKING_URI.removeprefix("sqlite:///")
    response = create(
        api,
        project,
        {
            "kind": "sql",
            "engine": "sqlite",
            "database": mlflow_db,
            "query": "SELECT name AS customer, name AS item FROM experiments",
        },
    )
    assert "is not readable by this project" in errors_by_field(response, 422)["source.database"]


def test_a_dotdot_path_from_the_allowed_folder_is_resolved_and_refused(api, project, data_dir):
    climbing = data_dir / ".." / ".." / Path(settings.DATA_DIR).name / "secret_key"
    response = create(api, project, {"kind": "file", "path": str(climbing), "format": "csv"})
    assert "is not readable by this project" in errors_by_field(response, 422)["source.path"]


def test_a_symlink_into_the_data_folder_is_refused(api, project, data_dir, secret_file):
    link = data_dir / "innocent.csv"
    link.unlink(missing_ok=True)
    link.symlink_to(secret_file)
    response = create(api, project, {"kind": "file", "path": str(link)})
    assert "is not readable by this project" in errors_by_field(response, 422)["source.path"]


def test_a_folder_holding_a_symlink_into_the_data_folder_is_refused(api, project, data_dir, purchases_csv):
    folder = data_dir / "folder-with-a-link"
    folder.mkdir(exist_ok=True)
    (folder / "real.csv").write_text("customer,item\nc1,p1\n")
    link = folder / "stolen.csv"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(settings.DATA_DIR) / "secret_key")
    response = create(api, project, {"kind": "file", "path": str(folder), "format": "csv"})
    assert "stolen.csv" in errors_by_field(response, 422)["source.path"]


def test_a_symlink_swapped_in_after_saving_is_refused_when_read(api, project, data_dir, secret_file):
    path = data_dir / "swapped.csv"
    path.unlink(missing_ok=True)
    path.write_text("customer,item\nc1,p1\n")
    dataset = create(api, project, {"kind": "file", "path": str(path)})
    assert dataset.status_code == 201, dataset.content
    path.unlink()
    path.symlink_to(secret_file)
    refreshed = api.post(f"/api/datasets/{dataset.json()['id']}/preview/")
    assert "is not readable by this project" in errors_by_field(refreshed, 422)["source.path"]
    assert secret_file.read_text() not in refreshed.content.decode()


def test_another_projects_upload_cannot_be_read_by_its_path(api, project, oscar, oscars_project, purchases_csv):
    oscars = api_client_for(oscar).upload(f"/api/projects/{oscars_project.id}/uploads/", purchases_csv)
    assert oscars.status_code == 201, oscars.content
    stored = Path(settings.MEDIA_ROOT) / "uploads" / f"project-{oscars_project.id}" / purchases_csv.name
    assert stored.exists()
    response = create(api, project, {"kind": "file", "path": str(stored)})
    assert "is not readable by this project" in errors_by_field(response, 422)["source.path"]


def test_a_project_reads_its_own_uploads(api, project, purchases_csv, purchases_mapping):
    upload = api.upload(f"/api/projects/{project.id}/uploads/", purchases_csv).json()
    own = Path(settings.MEDIA_ROOT) / "uploads" / f"project-{project.id}" / purchases_csv.name
    assert data_access_for(project).permits(own)
    response = create(api, project, {"kind": "upload", "upload_id": upload["id"]}, purchases_mapping)
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "query",
    [
        "SELECT content AS customer, content AS item FROM read_text('{secret}')",
        "SELECT column0 AS customer, column0 AS item FROM read_csv('{secret}', header = false)",
        "SELECT * FROM read_parquet('{secret}')",
        "SELECT file AS customer, file AS item FROM glob('{data_dir}/*')",
        "SELECT * FROM sqlite_scan('{database}', 'django_session')",
        "SELECT content AS customer, content AS item FROM read_text('https://example.com/x')",
    ],
)
def test_duckdb_sql_cannot_read_files_through_table_functions(api, project, duckdb_file, secret_file, query):
    query = query.format(secret=secret_file, data_dir=settings.DATA_DIR, database=platform_database())
    response = create(api, project, {"kind": "sql", "engine": "duckdb", "database": str(duckdb_file), "query": query})
    errors = errors_by_field(response, 422)
    assert set(errors) <= {"source", "source.query"}, errors
    assert secret_file.read_text() not in response.content.decode()
    assert not Dataset.objects.filter(name="loot").exists()


def test_duckdb_sql_reads_its_own_database(api, project, duckdb_file):
    response = create(
        api,
        project,
        {
            "kind": "sql",
            "engine": "duckdb",
            "database": str(duckdb_file),
            "query": "SELECT customer, item FROM purchases",
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["preview"]["rows"] == 1


def test_duckdb_sql_cannot_install_or_load_extensions(data_dir, duckdb_file):
    from ml_pipeline.config.dataset import SqlSource
    from ml_pipeline.data import sources

    con = sources.connect()
    sources.register_source(con, SqlSource(engine="duckdb", database=str(duckdb_file), query="SELECT 1 AS a"))
    for statement in ("INSTALL httpfs", "LOAD httpfs", "SET enable_external_access = true"):
        with pytest.raises(duckdb.Error):
            con.execute(statement)


def test_a_sqlite_source_is_opened_read_only(api, project, data_dir):
    path = data_dir / "own.sqlite"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE purchases AS SELECT 'c1' AS customer, 'p1' AS item")
    response = create(
        api,
        project,
        {"kind": "sql", "engine": "sqlite", "database": str(path), "query": "SELECT customer, item FROM purchases"},
    )
    assert response.status_code == 201, response.content
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM purchases").fetchone() == (1,)


def test_every_address_of_this_machine_names_the_same_postgres_database():
    targets = {
        postgres_target(url)
        for url in (
            "postgresql://u:p@localhost/platform",
            "postgresql://127.0.0.1:5432/platform",
            "postgres://[::1]/platform",
            "postgresql:///platform?host=/var/run/postgresql",
            f"postgresql://{os.uname().nodename}/platform",
        )
    }
    assert targets == {"local:5432/platform"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the platform's database is PostgreSQL")
def test_a_postgres_source_cannot_query_the_platforms_database(api, project):
    db = settings.DATABASES["default"]
    url = f"postgresql://{db.get('USER') or 'postgres'}@localhost:{db.get('PORT') or 5432}/{db['NAME']}"
    response = create(
        api,
        project,
        {
            "kind": "sql",
            "engine": "postgres",
            "database": url,
            "query": "SELECT session_key AS customer, session_data AS item FROM django_session",
        },
    )
    assert "belongs to the platform" in errors_by_field(response, 422)["source.database"]


def test_a_postgres_password_is_not_echoed_in_errors(api, project):
    response = create(
        api,
        project,
        {
            "kind": "sql",
            "engine": "postgres",
            "database": "postgresql://reader:hunter2@127.0.0.1:1/shop",
            "query": "SELECT customer, item FROM purchases",
        },
    )
    assert response.status_code == 422
    assert "hunter2" not in response.content.decode()


@pytest.fixture
def postgres_dataset(project, olivia):
    """A PostgreSQL source as it is stored: the platform keeps the password to read the data."""
    return Dataset.objects.create(
        project=project,
        name="warehouse",
        created_by=olivia,
        mapping=MAPPING,
        source={
            "kind": "sql",
            "engine": "postgres",
            "database": "postgresql://reader:hunter2@db.internal/shop",
            "query": "SELECT customer, item FROM purchases",
        },
    )


def test_a_postgres_password_is_not_echoed_by_the_api(api, postgres_dataset):
    body = api.get(f"/api/datasets/{postgres_dataset.id}/").json()
    assert body["source"]["database"] == f"postgresql://reader:{MASK}@db.internal/shop"
    assert "hunter2" not in str(api.get(f"/api/projects/{postgres_dataset.project_id}/datasets/").json())


def test_a_postgres_password_is_not_echoed_on_the_dataset_page(olivia, client, postgres_dataset):
    client.force_login(olivia)
    page = client.get(f"/datasets/{postgres_dataset.id}/")
    assert page.status_code == 200
    assert "hunter2" not in page.content.decode()
