"""The execution plane checks a source against its project's data policy when it reads, not only when saved."""

import pytest

from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data import sources
from ml_pipeline.data.access import DataAccess
from ml_pipeline.errors import DataError


@pytest.fixture
def folders(tmp_path):
    allowed, private = tmp_path / "allowed", tmp_path / "platform"
    allowed.mkdir()
    private.mkdir()
    (private / "sessions.csv").write_text("customer,item\nsession-key,secret\n")
    return allowed, private


def config_for(path) -> DatasetConfig:
    return DatasetConfig.model_validate(
        {
            "source": {"kind": "file", "path": str(path), "format": "csv"},
            "mapping": {"buyer_id": "customer", "product_id": "item"},
        }
    )


def test_a_file_that_became_a_symlink_is_refused_when_read(folders):
    allowed, private = folders
    source = allowed / "purchases.csv"
    source.symlink_to(private / "sessions.csv")
    access = DataAccess(allowed=[str(allowed)], denied=[str(private)])
    with (
        pytest.raises(DataError, match="is not readable by this project"),
        sources.open_rows(config_for(source), access=access),
    ):
        pass


def test_without_a_policy_every_path_is_read(folders):
    _, private = folders
    with sources.open_rows(config_for(private / "sessions.csv")) as con:
        assert con.execute("SELECT buyer_id FROM rows").fetchall() == [("session-key",)]


def test_a_locked_connection_writes_only_under_its_output_folder(folders, tmp_path):
    allowed, _ = folders
    (allowed / "purchases.csv").write_text("customer,item\nc1,p1\n")
    output = tmp_path / "output"
    output.mkdir()
    access = DataAccess(allowed=[str(allowed)])
    with sources.open_rows(config_for(allowed / "purchases.csv"), access=access, write=[output]) as con:
        con.execute(f"COPY rows TO '{output / 'rows.parquet'}' (FORMAT parquet)")
        with pytest.raises(Exception, match="disabled by configuration"):
            con.execute(f"COPY rows TO '{tmp_path / 'elsewhere.parquet'}' (FORMAT parquet)")
    assert (output / "rows.parquet").exists()
