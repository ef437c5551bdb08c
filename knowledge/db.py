"""Opening a knowledge base: where it is, the engine, and migrating it to the current schema.

A KB is named by a file path (SQLite) or a SQLAlchemy URL (``postgresql+psycopg://...``). With no
name, ``$AIDEPLOY_KB`` is used, then ``knowledge.db`` in the user's data directory.

SQLite is set up for several processes writing one file: WAL journal, a 30 s busy timeout, foreign
keys on, and write transactions that start with ``BEGIN IMMEDIATE`` so two writers queue up instead
of failing with "database is locked" when one upgrades its read lock. Read-only work asks for a
plain ``BEGIN`` with ``connection.execution_options(kb_read_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from aideploy.engine.errors import KnowledgeBaseError
from aideploy.engine.redact import redact

ENV_VAR = "AIDEPLOY_KB"
BUSY_TIMEOUT_MS = 30_000
#: key of the PostgreSQL advisory lock held while migrating
_PG_MIGRATION_LOCK = 0x61696465706C6F  # "aideplo"


def default_path() -> Path:
    """The KB file used when neither ``--kb`` nor ``$AIDEPLOY_KB`` names one."""
    return Path(platformdirs.user_data_dir("aideploy")) / "knowledge.db"


def resolve_url(url_or_path: str | os.PathLike[str] | URL | None = None) -> URL:
    """Turn a path, a URL, or nothing (env var, then the default file) into a SQLAlchemy URL."""
    if isinstance(url_or_path, URL):
        return url_or_path
    if url_or_path is None or str(url_or_path) == "":
        url_or_path = os.environ.get(ENV_VAR) or default_path()
    name = os.fspath(url_or_path)
    if "://" in name:
        try:
            return make_url(name)
        except ArgumentError as exc:
            raise KnowledgeBaseError(f"not a database URL: {redact(name)}") from exc
    path = Path(name).expanduser().absolute()
    return URL.create("sqlite+pysqlite", database=str(path))


def safe_url(url: URL) -> str:
    """The URL as it may appear in messages: password hidden, secrets redacted."""
    return redact(url.render_as_string(hide_password=True))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy's begin event decide how transactions start
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("kb_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: URL) -> Engine:
    """An engine for ``url`` with the SQLite settings described above."""
    try:
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
            )
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, OSError) as exc:
        raise KnowledgeBaseError(f"cannot open knowledge base {safe_url(url)}: {exc}") from exc


def _alembic_config(connection: Connection | None) -> Any:
    from alembic.config import Config

    here = Path(__file__).resolve().parent
    try:
        from importlib.resources import files

        script_location = str(files("aideploy.migrations"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - source checkout without install
        script_location = str(here.parent / "migrations")
    config = Config()
    config.set_main_option("script_location", script_location)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this version of aideploy knows."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    head = ScriptDirectory.from_config(config).get_current_head()
    return head or ""


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        conn = conn.execution_options(kb_read_only=True)
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision``, one migrator at a time.

    The whole upgrade runs in one transaction that holds the database's write lock (SQLite's
    ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so processes opening a new KB at the same
    time do not race to create the same tables.
    """
    from alembic import command

    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        command.upgrade(_alembic_config(conn), revision)
