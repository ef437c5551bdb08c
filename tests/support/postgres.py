"""A real PostgreSQL server for the tests: its own cluster in a temp dir, on a free local port.

``postgres_server`` (session) runs ``initdb`` + ``pg_ctl start`` as the ``postgres`` OS user when
the tests run as root; ``postgres_db`` gives each test a fresh database; ``kb_url`` runs a test
once against a SQLite file and once against PostgreSQL. Without PostgreSQL binaries the
PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN_DIRS = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]


def _pg_bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def _run_as(
    user: str | None, args: list[str], **kwargs: object
) -> subprocess.CompletedProcess[str]:
    cmd = (["runuser", "-u", user, "--", *args]) if user else args
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    run_user: str | None = None
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        run_user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="aideploy-pg-"))
    data, sockets = base / "data", base / "sock"
    sockets.mkdir()
    if run_user:
        for p in (base, sockets):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    user = "postgres" if run_user else pwd.getpwuid(os.geteuid()).pw_name
    try:
        _run_as(
            run_user,
            [initdb, "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync"],
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        _run_as(
            run_user,
            [
                pg_ctl,
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(base / "log"),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr}\n{log}")
    server = PostgresServer("127.0.0.1", port, user, sockets)
    try:
        yield server
    finally:
        subprocess.run(
            [
                *(["runuser", "-u", run_user, "--"] if run_user else []),
                pg_ctl,
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres_server.admin(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with contextlib.suppress(Exception):  # cleanup of a throwaway cluster
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def kb_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A knowledge-base location: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "knowledge.db")
    return str(request.getfixturevalue("postgres_db"))
