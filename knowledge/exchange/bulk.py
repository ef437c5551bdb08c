"""The bulk write of a validated file into the KB, in one transaction, step by step:
strategies, patterns, deployments, signatures, attempts.

Every step adds only what the KB lacks, so writing the same file twice adds nothing the second
time: strategies and patterns by name (a local one always wins), deployments by id, signatures
by hash (counts and time spans merge), attempts by record key. There can be millions of
attempts: from :class:`AttemptColumns` on they are handled column by column, with C-level maps
and zips, never a Python call per row.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
from sqlalchemy import Connection, bindparam, insert, select, update

from aideploy.knowledge.exchange import sql
from aideploy.knowledge.exchange.encounters import number_failures
from aideploy.knowledge.exchange.schema import (
    AttemptRecord,
    DeploymentRecord,
    Parsed,
    PatternRecord,
    SignatureRecord,
    StrategyRecord,
)
from aideploy.knowledge.models import (
    ATTEMPTS,
    DEPLOYMENTS,
    PATTERNS,
    SIGNATURES,
    SOURCES,
    STRATEGIES,
    utcnow,
)
from aideploy.knowledge.store import signature_hash


@dataclass
class ImportSummary:
    source: str
    records: int = 0
    added: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    #: strategies it brought that carry shell commands
    untrusted: list[str] = field(default_factory=list)
    #: records that came without an error class and were classified on import
    classified: int = 0
    #: the source was trusted before this import, which brought something new: it is not now
    was_trusted: bool = False
    #: whether the source is trusted after this import
    trusted: bool = False

    @property
    def total_added(self) -> int:
        return sum(self.added.values())

    def tally(self, kind: str, added: int, skipped: int) -> None:
        self.added[kind] = added
        self.skipped[kind] = skipped


@dataclass(frozen=True)
class AttemptColumns:
    """The attempts of a file as columns (each in file order), one per field of
    :class:`.schema.AttemptRecord`."""

    key: Sequence[str]
    text: Sequence[str]
    error_class: Sequence[str]
    strategy: Sequence[str]
    outcome: Sequence[str]
    step: Sequence[str]
    deployment: Sequence[str | None]
    context: Sequence[dict[str, Any]]
    weight: Sequence[float]
    duration: Sequence[float]
    at: Sequence[datetime | None]
    encounter: Sequence[int | None]

    @classmethod
    def of(cls, attempts: Sequence[AttemptRecord]) -> AttemptColumns:
        return cls(
            **{
                name: list(map(attrgetter(name), attempts))
                for name in AttemptRecord.__struct_fields__
            }
        )

    def __len__(self) -> int:
        return len(self.key)

    def kept(self, keep: Sequence[bool]) -> AttemptColumns:
        """Only the attempts whose ``keep`` is true."""
        return AttemptColumns(
            **{f.name: list(itertools.compress(getattr(self, f.name), keep)) for f in fields(self)}
        )


@dataclass(frozen=True)
class KnownDeployments:
    #: every deployment an imported attempt may name (the others become None)
    known: set[str]
    #: those of them the KB had before this import (only they can have attempts already)
    old: set[str]


@dataclass(frozen=True)
class StoredSignature:
    """A signature the KB has already."""

    id: int
    count: int
    first_seen: datetime
    last_seen: datetime
    #: the highest encounter number given to one of its failures
    encounters: int


@dataclass(frozen=True)
class FileSignatures:
    """The signatures of a file: its signature records and those only its attempts name."""

    #: by hash, one record each (several records of one signature merged)
    records: dict[str, SignatureRecord]
    #: the hashes of the file's signature records
    explicit: set[str]
    #: the hash of each signature that attempts name, in order of first appearance
    of_attempts: dict[str, str]


@dataclass(frozen=True)
class SignatureIds:
    #: stored signature text of each attempt -> its id in the KB
    ids: dict[str, int]
    #: signature id -> its highest encounter number in the KB before the import
    stored_encounters: dict[int, int]


def write(conn: Connection, parsed: Parsed, summary: ImportSummary, weight: float) -> None:
    """Add what ``parsed`` has and the KB lacks; counts in ``summary``. Imported outcomes count
    with ``weight`` times their own and name ``summary.source`` as their origin."""
    now = utcnow()
    summary.trusted = _add_source(conn, summary.source, now)
    _add_strategies(conn, parsed.strategies, summary)
    _add_patterns(conn, parsed.patterns, summary)
    attempts = AttemptColumns.of(parsed.attempts)
    deployments = _add_deployments(conn, parsed.deployments, attempts.deployment, summary)
    signatures = _add_signatures(conn, parsed.signatures, attempts, summary, now)
    _add_attempts(conn, attempts, deployments, signatures, summary, weight, now)
    if summary.total_added:
        _distrust_source(conn, summary)


def _add_source(conn: Connection, name: str, now: datetime) -> bool:
    """The source of this import, recorded untrusted when it is new: what it brings stays
    inert until ``learn trust SOURCE``. Whether it is trusted."""
    trusted = conn.scalar(select(SOURCES.c.trusted).where(SOURCES.c.name == name))
    if trusted is None:
        conn.execute(insert(SOURCES).values(name=name, trusted=False, imported_at=now))
    return bool(trusted)


def _distrust_source(conn: Connection, summary: ImportSummary) -> None:
    """A source that brings something new is untrusted again, with all it brought before:
    trust covers what was reviewed, not what arrives later under the same name."""
    src = SOURCES.c
    summary.was_trusted = bool(
        conn.execute(
            update(SOURCES)
            .where(src.name == summary.source, src.trusted.is_(True))
            .values(trusted=False, trusted_at=None)
        ).rowcount
    )
    if summary.was_trusted:
        summary.trusted = False
        for table in (STRATEGIES, PATTERNS):
            conn.execute(
                update(table).where(table.c.origin == summary.source).values(trusted=False)
            )


def _add_strategies(
    conn: Connection, records: list[StrategyRecord], summary: ImportSummary
) -> None:
    """New strategies by name, stored untrusted; those with commands are listed."""
    have = sql.existing(conn, STRATEGIES.c.name, (s.name for s in records))
    new: dict[str, dict[str, Any]] = {}
    for s in records:
        if s.name in have or s.name in new:
            continue
        new[s.name] = {
            **msgspec.structs.asdict(s),
            "origin": summary.source,
            "trusted": False,
        }
        if s.commands:
            summary.untrusted.append(s.name)
    if new:
        conn.execute(insert(STRATEGIES), list(new.values()))
    summary.tally("strategy", len(new), len(records) - len(new))


def _add_patterns(conn: Connection, records: list[PatternRecord], summary: ImportSummary) -> None:
    """New patterns by name (their regexes passed the safety check)."""
    have = sql.existing(conn, PATTERNS.c.name, (x.name for x in records))
    new: dict[str, dict[str, Any]] = {}
    for x in records:
        if x.name not in have and x.name not in new:
            new[x.name] = {
                **msgspec.structs.asdict(x),
                "origin": summary.source,
                "trusted": False,
            }
    if new:
        conn.execute(insert(PATTERNS), list(new.values()))
    summary.tally("pattern", len(new), len(records) - len(new))


def _add_deployments(
    conn: Connection,
    records: list[DeploymentRecord],
    named: Iterable[str | None],
    summary: ImportSummary,
) -> KnownDeployments:
    """New deployments by id; which deployments the attempts (naming ``named``) may keep."""
    dt = DEPLOYMENTS
    have = sql.existing(conn, dt.c.id, (d.id for d in records))
    new: dict[str, dict[str, Any]] = {}
    for d in records:
        if d.id not in have and d.id not in new:
            new[d.id] = msgspec.structs.asdict(d)
    sql.insert_records(conn, dt, list(new.values()))
    summary.tally("deployment", len(new), len(records) - len(new))
    known = set(have) | set(new)
    wanted = set(named) - known
    wanted.discard(None)
    wanted.discard("")
    old = set(have) | sql.existing(conn, dt.c.id, wanted)
    return KnownDeployments(known=known | old, old=old)


def _file_signatures(
    records: list[SignatureRecord], attempts: AttemptColumns, now: datetime
) -> FileSignatures:
    """By hash: the signature records, then a record for each signature only attempts name
    (count 0, seen at its first attempt, with that attempt's error class)."""
    by_hash: dict[str, SignatureRecord] = {}
    for s in records:
        h = signature_hash(s.text)
        prev = by_hash.get(h)
        by_hash[h] = s if prev is None else prev.merged(s)
    explicit = set(by_hash)
    texts = attempts.text
    of_attempts: dict[str, str] = {}
    # each signature's first attempt in the file (the reversed pairs leave the first index last)
    first_at = dict(zip(reversed(texts), range(len(texts) - 1, -1, -1), strict=True))
    for text in dict.fromkeys(texts):
        h = of_attempts[text] = signature_hash(text)
        if h not in by_hash:
            i = first_at[text]
            when = attempts.at[i] or now
            by_hash[h] = SignatureRecord(
                text=text,
                error_class=attempts.error_class[i],
                count=0,
                first_seen=when,
                last_seen=when,
            )
    return FileSignatures(records=by_hash, explicit=explicit, of_attempts=of_attempts)


def _stored_signatures(conn: Connection, hashes: Iterable[str]) -> dict[str, StoredSignature]:
    """The KB's signatures among ``hashes``, by hash."""
    sg = SIGNATURES.c
    stored: dict[str, StoredSignature] = {}
    for chunk in sql.chunks(list(hashes)):
        for sid, h, count, first, last, encounters in conn.execute(
            select(sg.id, sg.hash, sg.count, sg.first_seen, sg.last_seen, sg.encounters).where(
                sg.hash.in_(chunk)
            )
        ):
            stored[h] = StoredSignature(sid, count, first, last, encounters)
    return stored


def _merge_counts(
    conn: Connection, stored: dict[str, StoredSignature], file: FileSignatures
) -> None:
    """Counts of the KB's signatures that the file has records of merge with max(), and their
    time spans widen, so a second import changes nothing."""
    changes = []
    for h, old in stored.items():
        if h not in file.explicit:
            continue
        rec = file.records[h]
        count = max(old.count, rec.count)
        first = min(old.first_seen, rec.first_seen)
        last = max(old.last_seen, rec.last_seen)
        if (count, first, last) != (old.count, old.first_seen, old.last_seen):
            changes.append({"b_id": old.id, "b_c": count, "b_f": first, "b_l": last})
    if changes:
        sg = SIGNATURES
        conn.execute(
            update(sg)
            .where(sg.c.id == bindparam("b_id"))
            .values(
                count=bindparam("b_c"), first_seen=bindparam("b_f"), last_seen=bindparam("b_l")
            ),
            changes,
        )


def _add_signatures(
    conn: Connection,
    records: list[SignatureRecord],
    attempts: AttemptColumns,
    summary: ImportSummary,
    now: datetime,
) -> SignatureIds:
    """New signatures by hash, counts merged into known ones; the id of each attempt's."""
    sg = SIGNATURES
    file = _file_signatures(records, attempts, now)
    stored = _stored_signatures(conn, file.records)
    fresh = {h: rec for h, rec in file.records.items() if h not in stored}
    sql.insert_records(
        conn, sg, [{**msgspec.structs.asdict(rec), "hash": h} for h, rec in fresh.items()]
    )
    _merge_counts(conn, stored, file)
    summary.tally("signature", len(fresh), len(records) - len(file.explicit - stored.keys()))
    ids: dict[str, int] = {h: s.id for h, s in stored.items()}
    for chunk in sql.chunks(list(fresh)):
        ids.update(
            (h, sid)
            for sid, h in conn.execute(select(sg.c.id, sg.c.hash).where(sg.c.hash.in_(chunk)))
        )
    return SignatureIds(
        ids={text: ids[h] for text, h in file.of_attempts.items()},
        stored_encounters={s.id: s.encounters for s in stored.values()},
    )


def _new_attempts(conn: Connection, attempts: AttemptColumns) -> AttemptColumns:
    """The attempts whose record key the KB lacks, the first of each key in file order."""
    keys = attempts.key
    distinct = set(keys)
    have = sql.existing(conn, ATTEMPTS.c.record_key, distinct)
    if not have and len(distinct) == len(keys):
        return attempts
    seen = set(have)
    # the first record of each new key, in file order (set.add returns None)
    keep = [not (k in seen or seen.add(k)) for k in keys]  # type: ignore[func-returns-value]
    return attempts.kept(keep)


def _raise_encounters(conn: Connection, highest: dict[int, int], stored: dict[int, int]) -> None:
    """Store each signature's new highest encounter number where it went up."""
    raised = [{"b_id": sid, "b_n": n} for sid, n in highest.items() if n > stored.get(sid, 0)]
    if raised:
        sg = SIGNATURES
        conn.execute(
            update(sg).where(sg.c.id == bindparam("b_id")).values(encounters=bindparam("b_n")),
            raised,
        )


def _add_attempts(
    conn: Connection,
    attempts: AttemptColumns,
    deployments: KnownDeployments,
    signatures: SignatureIds,
    summary: ImportSummary,
    weight: float,
    now: datetime,
) -> None:
    """New attempts by record key, as rows of the attempts table built column by column."""
    at = ATTEMPTS
    new = _new_attempts(conn, attempts)
    sids = list(map(signatures.ids.__getitem__, new.text))
    deps = new.deployment
    if not {d for d in set(deps) if d is not None} <= deployments.known:
        deps = [d if d in deployments.known else None for d in deps]
    numbered = number_failures(
        conn,
        sids,
        new.outcome,
        deps,
        new.encounter,
        deployments.old,
        signatures.stored_encounters,
    )
    _raise_encounters(conn, numbered.highest, signatures.stored_encounters)
    # equal contexts are one object (the validator's cache): encode each object once
    to_json = sql.encoder(conn, at.c.context)
    encoded = {
        i: to_json(c) for i, c in dict(zip(map(id, new.context), new.context, strict=True)).items()
    }
    stored_weight = {w: round(w * weight, 6) for w in set(new.weight)}
    times = new.at
    if None in times:
        times = [now if t is None else t for t in times]
    # in the table's column order (sql.insert_many checks it)
    columns: dict[str, Iterable[Any]] = {
        "signature_id": sids,
        "strategy": new.strategy,
        "step": new.step,
        "deployment_id": deps,
        "context": map(encoded.__getitem__, map(id, new.context)),
        "outcome": new.outcome,
        "duration": new.duration,
        "decided_by": itertools.repeat("imported"),
        "weight": map(stored_weight.__getitem__, new.weight),
        "origin": itertools.repeat(summary.source),
        "record_key": new.key,
        "at": map(sql.encoder(conn, at.c.at), times),
        "encounter": numbered.encounters,
    }
    rows = zip(*columns.values(), strict=False)  # the repeats are endless
    with sql.bulk_load(conn, at, len(new)):
        added = sql.insert_many(conn, at, list(columns), rows)
    summary.tally("attempt", added, len(attempts) - added)
