"""Opening a knowledge base: where it is, the engine, and migrating it to the current schema.

A KB is named by a file path (SQLite) or a SQLAlchemy URL (``postgresql+psycopg://...``). With no
name, ``$AIDEPLOY_KB`` is used, then ``knowledge.db`` in the user's data directory.

SQLite is set up for several processes writing one file: WAL journal, a 30 s busy timeout, foreign
keys on, and write transactions that start with ``BEGIN IMMEDIATE`` so two writers queue up instead
of failing with "database is locked" when one upgrades its read lock. Read-only work asks for a
plain ``BEGIN`` with ``connection.execution_options(kb_read_only=True)``.

Opening a KB that is already at the newest revision (the common case: every CLI call) costs one
query: the revision stored in ``alembic_version`` is compared with the head revision read once from
the packaged revision files. Alembic itself is loaded only when the two differ, to migrate.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from aideploy.core.errors import KnowledgeBaseError
from aideploy.core.private import create_private, private_dir
from aideploy.core.redact import redact

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


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names; None for another database, in-memory or a ``file:`` URI."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return None if database.startswith("file:") else Path(database)


def _private_sqlite_file(file: Path) -> None:
    """The KB file exists 0600 (its directory, when created here, 0700) before SQLite opens it.

    SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files it creates the database file's
    mode, so those are 0600 too; companions left by an older version are made 0600 here.
    """
    private_dir(file.parent)
    create_private(file)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = file.with_name(file.name + suffix)
        if companion.exists():
            create_private(companion)


def make_engine(url: URL) -> Engine:
    """An engine for ``url`` with the SQLite settings described above."""
    try:
        if url.get_backend_name() == "sqlite":
            file = sqlite_file(url)
            if file is not None:
                _private_sqlite_file(file)
            engine = create_engine(
                url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
            )
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, OSError) as exc:
        raise KnowledgeBaseError(f"cannot open knowledge base {safe_url(url)}: {exc}") from exc


def _script_location() -> str:
    try:
        from importlib.resources import files

        return str(files("aideploy.migrations"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - source checkout without install
        return str(Path(__file__).resolve().parent.parent / "migrations")


def _alembic_config(connection: Connection | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _script_location())
    config.attributes["connection"] = connection
    return config


#: ``revision = "0003"`` / ``down_revision: str | None = "0002"`` at the start of a line
_REVISION_LINE = re.compile(
    r"""^(?P<down>down_)?revision\s*(?::[^=\n]*)?=\s*(?:None|(?P<q>["'])(?P<id>[^"'\n]*)(?P=q))\s*$""",
    re.MULTILINE,
)


@functools.cache
def head_revision() -> str:
    """The newest schema revision this version of aideploy knows.

    Read once per process from the packaged revision files (their ``revision`` and
    ``down_revision`` lines), without loading Alembic; anything unusual (several heads, a file
    that does not say its revision plainly) is left to Alembic's own reading. A test holds the two
    equal.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        for path in sorted(Path(_script_location(), "versions").glob("*.py")):
            if path.name.startswith("_"):
                continue
            found = {m["down"] or "": m["id"] for m in _REVISION_LINE.finditer(path.read_text())}
            if not found.get(""):
                return _alembic_head_revision()
            revisions.add(found[""])
            if found.get("down_"):
                parents.add(found["down_"])
    except OSError:  # pragma: no cover - a zipped install: let Alembic find its way
        return _alembic_head_revision()
    heads = revisions - parents
    if len(heads) != 1:
        return _alembic_head_revision()
    return heads.pop()


def _alembic_head_revision() -> str:
    """The head revision as Alembic computes it (loads Alembic and every revision module)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    return head or ""


def at_head(engine: Engine) -> bool:
    """Whether the database's stored revision is the head revision (False: empty or older).

    One plain query on ``alembic_version``, no Alembic: this is the check every open makes.
    """
    head = head_revision()
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(kb_read_only=True)
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False  # no alembic_version table yet: a new database
    return [r[0] for r in rows] == [head]


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
    if revision == "head" and at_head(engine):
        return
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        command.upgrade(_alembic_config(conn), revision)
