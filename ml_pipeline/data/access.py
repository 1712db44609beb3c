"""What a dataset source may read, and DuckDB connections that can read nothing else.

A source is user input: a path, a database file, a SQL query. Two layers keep
it to what its project may see:

* :class:`DataAccess` is the policy. The platform builds one per project (its
  own uploads plus the folders an administrator listed; never the platform's
  own files) and puts it in the pipeline spec; the execution plane checks
  every file it is about to read against it, by real path after resolving
  symlinks, at the moment it reads (a dataset checked when it was saved may
  point at a symlink swapped since). Without a policy (the CLI, run by
  someone who can read the files anyway) every path is allowed.
* :func:`lock_down` turns off DuckDB's own ways of reaching the file system
  (``read_text``, ``read_csv``, ``glob``, ``ATTACH``, extension downloads)
  except for the exact files and folders a stage needs, then locks the
  configuration so a query cannot turn them back on.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
from pydantic import BaseModel, ConfigDict

from ml_pipeline.data.sql import literal
from ml_pipeline.errors import DataError

# Never readable as data, whatever folder an administrator allowed: the
# kernel's views of processes (their environment holds secrets) and devices.
ALWAYS_DENIED = ("/proc", "/sys", "/dev")


def real_path(path: str | Path) -> Path:
    """The path with ``~``, ``..`` and every symlink resolved."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_local(host: str) -> bool:
    """Whether ``host`` is this machine: a Unix socket, a loopback address, or one of its own names."""
    if not host or host.startswith("/"):
        return True
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return False
    return any(
        ipaddress.ip_address(a.split("%")[0]).is_loopback or a in own or a in ("0.0.0.0", "::") for a in addresses
    )


def postgres_target(url: str) -> str:
    """``host:port/database`` of a PostgreSQL URL: the identity every URL naming that database shares.

    Every way of reaching this machine (socket, loopback, its own name) is one host, "local".
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", [""])[0]
    port = parts.port or int(query.get("port", ["5432"])[0] or 5432)
    database = parts.path.lstrip("/") or query.get("dbname", [""])[0] or parts.username or ""
    return f"{'local' if _is_local(host) else host.lower()}:{port}/{database}"


class DataAccess(BaseModel):
    """The files and databases one project's sources may read.

    ``own`` folders (the project's uploads) are always readable; anything
    under ``denied`` (the platform's data folder, databases, pipeline and
    serving folders) is refused even when it lies under an ``allowed`` root;
    everything else must lie under an ``allowed`` root.
    """

    model_config = ConfigDict(extra="forbid")

    own: list[str] = []
    allowed: list[str] = []
    denied: list[str] = []
    denied_databases: list[str] = []  # postgres_target() of databases no source may query

    def permits(self, path: str | Path) -> bool:
        resolved = real_path(path)
        if any(_inside(resolved, real_path(folder)) for folder in self.own):
            return True
        if any(_inside(resolved, real_path(folder)) for folder in [*self.denied, *ALWAYS_DENIED]):
            return False
        return any(_inside(resolved, real_path(folder)) for folder in self.allowed)

    def refusal(self, given: str) -> str:
        roots = ", ".join(self.allowed) if self.allowed else "none are set"
        return (
            f"'{given}' is not readable by this project: a source may read the project's uploads and the "
            f"folders listed in DATASET_ALLOWED_ROOTS ({roots}), never the platform's own files"
        )


def check_file(access: DataAccess | None, path: str | Path, given: str, field: str) -> Path:
    """The real path of a file or folder the source names, or a DataError naming ``field``."""
    resolved = real_path(path)
    if access is not None and not access.permits(resolved):
        raise DataError(access.refusal(given), field=field)
    return resolved


def check_database_url(access: DataAccess | None, url: str, field: str) -> None:
    if access is not None and postgres_target(url) in access.denied_databases:
        raise DataError("this database belongs to the platform itself and cannot be a dataset source", field=field)


def lock_down(con: duckdb.DuckDBPyConnection, *, read: list[Path] = (), write: list[Path] = ()) -> None:
    """Let ``con`` touch only the files in ``read`` and the folders in ``write``, for good.

    Call it after every ATTACH the connection needs: an attached database
    stays queryable, but nothing new can be opened, installed or loaded, and
    ``lock_configuration`` stops a query from setting any of it back.
    """
    files = [str(p) for p in read if not Path(p).is_dir()]
    folders = [str(p).rstrip("/") + "/" for p in [*[p for p in read if Path(p).is_dir()], *write]]
    spill = os.environ.get("DUCKDB_TEMP_DIR", "/tmp/duckdb_spill")
    folders.append(spill.rstrip("/") + "/")
    if files:
        con.execute(f"SET allowed_paths = {_list(files)}")
    con.execute(f"SET allowed_directories = {_list(folders)}")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def _list(values: list[str]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"
