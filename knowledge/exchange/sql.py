"""The database side of a bulk write: which values a table has already, inserts of many rows
(straight to the driver on SQLite), and the index rebuild around a large insert."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select

from aideploy.core.errors import KnowledgeBaseError

#: values in one ``IN (...)`` list (under SQLite's old limit of 999 bound parameters)
IN_CHUNK = 900
#: a table holding at most this many times as many rows as the values looked up is read whole
PRELOAD_FACTOR = 4
#: rows in one Core executemany (databases other than SQLite)
INSERT_CHUNK = 20_000
#: an import adding at least this many rows, and at least as many as the table holds, rebuilds
#: the table's indexes after the insert (SQLite) instead of updating them row by row
REBUILD_MIN_ROWS = 50_000
#: distinct values whose bind processing one _encoder remembers
ENCODER_CACHE_SIZE = 100_000


def chunks(items: list[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def existing(conn: Connection, column: Any, values: Iterable[Any]) -> set[Any]:
    """Which of ``values`` are already in ``column``.

    When the table holds no more than a few times as many rows as there are values, reading the
    whole column once is cheaper than looking the values up chunk by chunk.
    """
    wanted = values if isinstance(values, set) else set(values)
    if not wanted:
        return set()
    rows = int(conn.scalar(select(func.count()).select_from(column.table)) or 0)
    if rows <= PRELOAD_FACTOR * len(wanted):
        return {v for (v,) in conn.execute(select(column))} & wanted
    found: set[Any] = set()
    for chunk in chunks(sorted(wanted)):
        found.update(v for (v,) in conn.execute(select(column).where(column.in_(chunk))))
    return found


def _fast_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def _same(value: Any) -> Any:
    return value


_SAMPLE_TIME = datetime(2025, 1, 6, 7, 8, 9, 10)

#: a time as SQLite's DATETIME stores it (the values are never None here)
_ISO_MICROSECONDS = operator.methodcaller("isoformat", " ", "microseconds")


def encoder(conn: Connection, column: Any) -> Callable[[Any], Any]:
    """What ``column``'s type does to a value on its way to the driver, for :func:`insert_many`.

    On SQLite that is the type's own bind processor (JSON text, the DATETIME storage format),
    remembered per value object (the importer shares equal contexts and times); elsewhere the
    value is left for SQLAlchemy to process.
    """
    if not _fast_sqlite(conn):
        return _same
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if process is None:
        return _same
    if _SAMPLE_TIME.__class__ in column.type.python_type.__mro__ and process(
        _SAMPLE_TIME
    ) == _SAMPLE_TIME.isoformat(" ", "microseconds"):
        # the dialect stores times as ISO text with microseconds: one C call per time
        return _ISO_MICROSECONDS
    done: dict[int, tuple[Any, Any]] = {}

    def run(value: Any) -> Any:
        found = done.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        result = None if value is None else process(value)
        if len(done) < ENCODER_CACHE_SIZE:
            done[id(value)] = (value, result)  # the value is kept, so its id stays its own
        return result

    return run


def _nullable(encode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    if encode is _same:
        return encode
    return lambda value: None if value is None else encode(value)


def insert_records(conn: Connection, table: Table, records: list[dict[str, Any]]) -> None:
    """Insert dicts that all have the same keys (tens of thousands of deployments or
    signatures): through :func:`insert_many` on SQLite, the Core executemany elsewhere."""
    if not records:
        return
    if not _fast_sqlite(conn):
        conn.execute(insert(table), records)
        return
    names = [c.name for c in table.columns if c.name in records[0]]
    encoders = [_nullable(encoder(conn, table.c[name])) for name in names]
    rows = (
        tuple([encode(r[name]) for name, encode in zip(names, encoders, strict=True)])
        for r in records
    )
    insert_many(conn, table, names, rows)


def _batches(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def insert_many(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """Insert rows (tuples in ``columns`` order) with executemany; returns the count.

    On SQLite the statement is the table's Core ``insert()`` compiled for the dialect and the
    rows, whose values went through :func:`encoder` (the rest are ints, floats, strings and
    None, which need no processing), go as one iterator to the DB-API cursor's executemany:
    SQLAlchemy's per-row parameter handling would cost more than the insert itself. Other
    databases take the Core executemany, in chunks.
    """
    count = 0
    if not _fast_sqlite(conn):
        for chunk in _batches(rows, INSERT_CHUNK):
            conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in chunk])
            count += len(chunk)
        return count
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
    if list(compiled.positiontup or ()) != list(columns):  # pragma: no cover - a coding error
        raise KnowledgeBaseError(f"insert into {table.name}: columns not in table order")
    # the driver's connection (inside this transaction) takes the rows as they come
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.executemany(str(compiled), rows)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


@contextmanager
def bulk_load(conn: Connection, table: Table, incoming: int) -> Iterator[None]:
    """Around a large insert on SQLite: drop the table's indexes, then create them again.

    Building an index from the finished table (one sort) is several times faster than updating
    it for each of many rows. It all happens in the import's one transaction, so a failure
    (including a duplicate in a unique index) rolls back to the KB as it was. The indexes are
    the models' own, which the no-drift test holds equal to the migrated schema.
    """
    if not _fast_sqlite(conn) or incoming < REBUILD_MIN_ROWS:
        yield
        return
    rows = int(conn.scalar(select(func.count()).select_from(table)) or 0)
    if rows > incoming:
        yield
        return
    indexes = sorted(table.indexes, key=lambda ix: str(ix.name))
    for index in indexes:
        index.drop(conn)
    yield
    for index in indexes:
        index.create(conn)
