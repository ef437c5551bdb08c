"""Encounter numbers of imported failures: kept, dropped, or given (see :func:`number_failures`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from aideploy.knowledge.exchange.sql import chunks
from aideploy.knowledge.models import ATTEMPTS


@dataclass(frozen=True)
class Numbered:
    #: the encounter of each attempt to insert, in file order (None on all but failures' first)
    encounters: Sequence[int | None]
    #: signature id -> the highest encounter number given to one of its attempts here
    highest: dict[int, int]


def number_failures(
    conn: Connection,
    sids: Sequence[int],
    outcomes: Sequence[str],
    deps: Sequence[str | None],
    encounters: Sequence[int | None],
    old_deps: set[str],
    stored: dict[int, int],
) -> Numbered:
    """The encounter of each attempt to insert, and each signature's highest encounter.

    An attempt keeps the encounter it came with when its deployment is kept, unless the KB has
    a decided attempt on its signature in that deployment (the failure is counted already). One
    that came without (a file from another tool) and is a failure's first attempt (it has a kept
    deployment, is not skipped, and no attempt on the same signature in the same deployment that
    is not skipped comes before it, in the KB or earlier in the file) gets the signature's next
    number, in file order, after the highest one in the KB (``stored``, by signature id) and in
    the file. ``old_deps`` are the deployments the KB had before this import.
    The rows are many: numpy finds the highest numbers and the attempts without one.
    """
    import numpy as np

    if not sids:
        return Numbered(encounters, {})
    if None in deps:
        encounters = [None if d is None else e for e, d in zip(encounters, deps, strict=True)]
    decided: set[tuple[str, int]] = set()
    asked: set[str | None] = set()
    if old_deps:
        # a number that came for a failure the KB counts already (it has a decided attempt on
        # that signature in that deployment) would count it twice: it is dropped
        old = [
            i
            for i, (e, d) in enumerate(zip(encounters, deps, strict=True))
            if e is not None and d in old_deps
        ]
        asked = {deps[i] for i in old}
        decided = _decided_pairs(conn, asked)
        if old and decided:
            encounters = list(encounters)
            for i in old:
                if (deps[i], sids[i]) in decided:
                    encounters[i] = None
    given = np.array(encounters, dtype=np.float64)  # None -> NaN
    missing = np.isnan(given)
    ids = np.fromiter(sids, dtype=np.int64, count=len(sids))
    top = np.zeros(int(ids.max()) + 1)
    np.maximum.at(top, ids[~missing], given[~missing])
    found = np.flatnonzero(top)
    highest = dict(zip(found.tolist(), top[found].astype(np.int64).tolist(), strict=True))
    candidates = [
        i
        for i in np.flatnonzero(missing).tolist()
        if deps[i] is not None and outcomes[i] != "skipped"
    ]
    if not candidates:
        return Numbered(encounters, highest)
    # the first decided attempt of each (deployment, signature) in the file, for the deployments
    # of the candidates; and those the KB has already
    where = {deps[i] for i in candidates}
    first: dict[tuple[str | None, int], int] = {}
    for i in itertools.compress(range(len(deps)), map(where.__contains__, deps)):
        if outcomes[i] != "skipped":
            first.setdefault((deps[i], sids[i]), i)
    decided |= _decided_pairs(conn, (where & old_deps) - asked)
    numbered = list(encounters)
    for i in candidates:
        dep, sid = deps[i], sids[i]
        if first[(dep, sid)] != i or (dep, sid) in decided:
            continue
        n = highest[sid] = max(highest.get(sid, 0), stored.get(sid, 0)) + 1
        numbered[i] = n
    return Numbered(numbered, highest)


def _decided_pairs(conn: Connection, deployments: set[Any]) -> set[tuple[str, int]]:
    """(deployment, signature id) of the KB's attempts that are not skipped, in ``deployments``."""
    at = ATTEMPTS.c
    pairs: set[tuple[str, int]] = set()
    for chunk in chunks(sorted(deployments)):
        pairs.update(
            (dep, sid)
            for dep, sid in conn.execute(
                select(at.deployment_id, at.signature_id)
                .where(at.deployment_id.in_(chunk), at.outcome != "skipped")
                .distinct()
            )
        )
    return pairs
