"""Selecting hosts with Ansible-like patterns.

A pattern is a list of terms separated by ``,`` or ``:``. A term names a group or a host, or is a
glob over both (``web*``, ``db-?``); ``all`` and ``*`` are every host. Plain terms add hosts;
``&term`` keeps only hosts also in the term; ``!term`` removes the term's hosts. The result keeps
the inventory's order.
"""

from __future__ import annotations

import fnmatch
import re

from aideploy.core.errors import UsageError
from aideploy.services.inventory.model import ALL, Inventory

_SPLIT = re.compile(r"[,:]")


def _term_hosts(inventory: Inventory, term: str) -> set[str]:
    if term in (ALL, "*"):
        return set(inventory.hosts)
    if term in inventory.groups:
        return set(inventory.group_hosts(term))
    if term in inventory.hosts:
        return {term}
    found = {h for h in inventory.hosts if fnmatch.fnmatchcase(h, term)}
    for group in inventory.groups:
        if fnmatch.fnmatchcase(group, term):
            found.update(inventory.group_hosts(group))
    return found


def select_hosts(inventory: Inventory, pattern: str, *, option: str = "--limit") -> list[str]:
    """The hosts ``pattern`` selects, in inventory order; a term that selects nothing, or an
    empty selection, is a :class:`UsageError`."""
    terms = [t.strip() for t in _SPLIT.split(pattern) if t.strip()]
    if not terms:
        raise UsageError(f"{option} {pattern!r}: empty pattern")
    chosen: set[str] = set()
    keep: list[set[str]] = []
    drop: set[str] = set()
    plain = False
    for term in terms:
        kind, name = (term[0], term[1:]) if term[0] in "!&" else ("", term)
        if not name:
            raise UsageError(f"{option} {pattern!r}: {term!r} names nothing")
        hosts = _term_hosts(inventory, name)
        if not hosts and kind != "!":
            raise UsageError(f"{option} {pattern!r}: {name!r} matches no host or group")
        if kind == "!":
            drop |= hosts
        elif kind == "&":
            keep.append(hosts)
        else:
            plain = True
            chosen |= hosts
    if not plain:  # only intersections and exclusions: start from every host
        chosen = set(inventory.hosts)
    for hosts in keep:
        chosen &= hosts
    chosen -= drop
    if not chosen:
        raise UsageError(f"{option} {pattern!r}: selects no host")
    return [h for h in inventory.hosts if h in chosen]
