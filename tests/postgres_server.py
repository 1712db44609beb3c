"""Run a command against a throwaway PostgreSQL server: ``python tests/postgres_server.py -- pytest ...``.

The platform runs on SQLite by default and on PostgreSQL when DATABASE_URL
says so; the suite runs on both (``make test``) so nothing SQLite-only slips
in. This starts a private server (``initdb`` + ``pg_ctl``, listening on a
Unix socket in a temporary folder only, trust auth for its one user), runs
the command with ``MLP_TEST_DATABASE_URL`` pointing at it (tests/settings.py
then gives each test process its own database), and removes everything
afterwards, whatever the command did.

PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (Debian's package creates it) or ``nobody``.
pytest-postgresql would start the server for us but cannot drop root, and
the worker's child processes need the database URL before Django starts.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import quote

PORT = 55432  # only a socket file name: the server listens on no TCP port


def server_binaries() -> str | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(versions[-1]) if versions else None


def server_user() -> str | None:
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return user
        except KeyError:
            continue
    raise SystemExit("running as root and there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL")


def main(command: list[str]) -> int:
    binaries = server_binaries()
    if binaries is None:
        raise SystemExit(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed; on Debian: apt-get install postgresql"
        )
    user = server_user()

    def as_server_user(command: list[str]) -> list[str]:
        return ["runuser", "-u", user, "--", *command] if user else command

    folder = tempfile.mkdtemp(prefix="mlp-postgres-")
    data = os.path.join(folder, "data")
    if user:
        shutil.chown(folder, user=user)
    pg_ctl = os.path.join(binaries, "pg_ctl")
    try:
        subprocess.run(
            as_server_user([os.path.join(binaries, "initdb"), "-D", data, "-U", "mlp", "--auth=trust", "--no-sync"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = f"-k {folder} -p {PORT} -c listen_addresses='' -c fsync=off -c max_connections=200"
        subprocess.run(
            as_server_user(
                [pg_ctl, "-D", data, "-o", options, "-l", os.path.join(folder, "server.log"), "-w", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        url = f"postgres://mlp@{quote(folder, safe='')}:{PORT}/postgres"
        print(f"PostgreSQL test server: {url}", flush=True)
        return subprocess.run(command, env={**os.environ, "MLP_TEST_DATABASE_URL": url}).returncode
    finally:
        subprocess.run(
            as_server_user([pg_ctl, "-D", data, "-m", "immediate", "stop"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        raise SystemExit(__doc__.splitlines()[0])
    sys.exit(main(arguments))
