"""Alembic environment for the knowledge base.

aideploy calls Alembic programmatically (see :func:`aideploy.knowledge.db.upgrade`) and hands this
module an open connection in ``config.attributes["connection"]``; run from the command line, the
URL comes from ``-x url=...``, then ``AIDEPLOY_KB``, then ``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from aideploy.knowledge.db import make_engine, resolve_url
from aideploy.knowledge.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("AIDEPLOY_KB")
        or config.get_main_option("sqlalchemy.url")
        or None
    )
    engine = make_engine(resolve_url(url))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported for the knowledge base")
run_migrations_online()
