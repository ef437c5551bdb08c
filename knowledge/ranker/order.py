"""Ordering: the scored candidates as the executor tries them.

Strategies that already failed for this error in this deployment are demoted, never dropped;
manual intervention, which ends automatic recovery, is held back unless it has fixed this very
signature or automatic strategies keep failing on it; now and then an untried alternative is
explored first.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from aideploy.core.recovery import Candidate, Risk
from aideploy.knowledge.ranker.score import MANUAL, CandidateDetail

HOPELESS = 0.1  # a fresh candidate under this chance is not put first ahead of a demoted one
# manual intervention ends the deployment's automatic recovery, so unless it has recovered this
# very signature before it is ordered as if its score were this fraction of what it is
MANUAL_ORDER = 0.25
# a strategy that failed once in this deployment is retried at once (before the untried ones) only
# when, with that failure recorded, it is still this many times likelier to be the fix than the
# best untried candidate (a right fix that failed by chance, on a well-known error)
RETRY_AT_ONCE = 3.0
EXPLORE_MAX = 0.2  # the most often exploration may be asked for
EXPLORE_KNOWN = 3.0  # weighted outcomes behind the first candidate that make exploring pointless
EXPLORE_SHARE = 0.5  # an alternative explored scores at least this share of the first's


@dataclass(frozen=True)
class Ordered:
    candidates: list[Candidate]
    fresh: list[CandidateDetail]  # the head of ``candidates``: fresh ones and those failed once


def order_score(d: CandidateDetail) -> float:
    """The score a candidate is ordered by: manual intervention held back (``MANUAL_ORDER``)
    unless it has recovered this signature or automatic strategies keep failing on it."""
    if d.strategy == MANUAL and d.signature_recovered <= 0 and not d.stuck:
        return d.score * MANUAL_ORDER
    return d.score


def _proven(details: Sequence[CandidateDetail]) -> list[CandidateDetail]:
    """The candidates with a record on this very signature, best first."""
    return sorted(
        (d for d in details if d.signature_recovered > 0),
        key=lambda d: (d.score, d.strategy),
        reverse=True,
    )


def _chance(d: CandidateDetail, proven: Sequence[CandidateDetail]) -> float:
    """A candidate's chance to be the fix: a strategy with a record on this very signature
    leaves the others only the chance that it is not the fix this time."""
    rival = next((p.score for p in proven if p.strategy != d.strategy), 0.0)
    return order_score(d) * (1.0 - rival)


def _why_demoted(d: CandidateDetail, failures: int) -> str:
    if not failures:
        return d.why
    times = "once" if failures == 1 else f"{failures} times"
    return f"failed {times} for this error in this deployment, demoted; {d.why}"


def _first(
    fresh: Sequence[CandidateDetail],
    details: Sequence[CandidateDetail],
    failures: Collection[str],
    failed_last: Collection[str],
) -> int | None:
    """Which fresh candidate goes first: the best untried one with a real chance, unless one
    that failed once here is still ``RETRY_AT_ONCE`` times likelier to be the fix; failing that
    the best one, but not the strategy that failed last."""
    proven = _proven(details)
    first = next(
        (
            i
            for i, d in enumerate(fresh)
            if d.strategy not in failures and _chance(d, proven) >= HOPELESS
        ),
        None,
    )
    again = next((i for i, d in enumerate(fresh) if d.strategy in failures), None)
    if again is not None and (
        first is None or fresh[again].score >= RETRY_AT_ONCE * fresh[first].score
    ):
        return again
    if first is None:
        first = next((i for i, d in enumerate(fresh) if d.strategy not in failed_last), None)
    return first


def order_candidates(details: Sequence[CandidateDetail], exclude: Collection[str] = ()) -> Ordered:
    """Scored candidates (best first) in the order to try them.

    Strategies in ``exclude`` (already failed for this error in this deployment, in the order
    they failed; a name may appear once per failure) are not dropped but demoted:

    * first comes the best fresh candidate with a real chance (at least ``HOPELESS``, once the
      share left by a strategy with a record on this very signature is taken off), unless a
      strategy that failed once here is still ``RETRY_AT_ONCE`` times likelier (a right fix
      that failed by chance); when no fresh candidate has a real chance, the best of the rest -
      but never the strategy that failed last while another automatic candidate remains;
    * then the other fresh candidates and those that failed once here, by score, so a right fix
      that failed by chance comes back before weak alternatives;
    * then manual intervention as the fallback, and last the strategies that failed more than
      once here.

    Manual intervention is ordered by :func:`order_score`, and takes a place among the fresh
    candidates only when that is still at least ``HOPELESS``; it is never first while an
    automatic candidate has not failed in this deployment.
    """
    failures: dict[str, int] = {}
    for name in exclude:
        failures[name] = failures.get(name, 0) + 1
    fresh, fallback, rest = [], [], []
    for d in sorted(details, key=lambda d: -order_score(d)):
        n = failures.get(d.strategy, 0)
        if n == 0 and d.strategy == MANUAL and order_score(d) < HOPELESS:
            fallback.append(d)
        elif n == 0 or (n == 1 and d.strategy != MANUAL):
            fresh.append(d)
        else:
            rest.append(d)
    rest.sort(key=lambda d: (failures[d.strategy], -d.score))
    # a set has no order: then every strategy in it counts as the one that failed last
    failed_last = list(exclude)[-1:] if isinstance(exclude, Sequence) else list(exclude)
    first = _first(fresh, details, failures, failed_last)
    if first:
        fresh.insert(0, fresh.pop(first))
    if fresh and fresh[0].strategy == MANUAL:
        # manual intervention ends automatic recovery: never first while an automatic candidate
        # has not failed in this deployment
        auto = next(
            (i for i, d in enumerate(fresh) if d.strategy != MANUAL and d.strategy not in failures),
            None,
        )
        if auto is not None:
            fresh.insert(0, fresh.pop(auto))
    candidates = [
        Candidate(d.strategy, d.score, _why_demoted(d, failures.get(d.strategy, 0)), d.decided_by)
        for d in (*fresh, *fallback, *rest)
    ]
    return Ordered(candidates, fresh)


class Explorer:
    """Now and then puts a promising, untried, not-high-risk alternative first (at most once
    per signature)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = max(0.0, min(rate, EXPLORE_MAX))
        self._rng = random.Random(seed)
        self._explored: set[str] = set()

    def maybe_explore(self, signature: str, ordered: Ordered) -> list[Candidate]:
        out, kept = ordered.candidates, ordered.fresh
        if not self.rate or len(kept) < 3 or signature in self._explored:
            return out
        top = kept[0]
        if top.neighbour_recovered + top.neighbour_failed >= EXPLORE_KNOWN:
            return out
        if self._rng.random() >= self.rate:
            return out
        for i, d in enumerate(kept[1:], 1):
            if d.strategy == MANUAL or d.risk == Risk.HIGH.value:
                continue
            if (
                d.neighbour_recovered + d.neighbour_failed > 0
                or d.score < EXPLORE_SHARE * top.score
            ):
                continue
            self._explored.add(signature)
            chosen = out[i]
            why = f"exploring an untried alternative (low/medium risk); {chosen.why}"
            return [Candidate(chosen.strategy, chosen.score, why, "explore")] + [
                c for j, c in enumerate(out) if j != i
            ]
        return out
