"""Evidence: what the recorded outcomes say, kept up to date one outcome at a time.

Evidence comes in levels, most specific first (the scoring shrinks each towards the broader one):

* this very signature in this step, then in other steps: forgetting tallies of each strategy's
  weighted recoveries and failures, and the belief about which strategy is its fix there;
* fuzzy neighbours: signatures like this one (rapidfuzz over masked signatures) of the same
  class, printed by the same tool;
* the *cause*: the (signature, step) pairs of the same class, in the same step, with the same
  parsed detail (the rules that match, the service, command, package or tool the error names);
* the class alone: every (signature, step) pair of the class.

Each (signature, step) pair votes for the class, its step and its cause with its belief about
which strategy fixes it now. Every count is weighted: an outcome of import weight 0.3 counts 0.3
of an observation, in the tallies, in the belief and in the votes alike - there is no threshold.

The belief belongs to the one-fix model the scoring uses as well: one strategy is taken to be the
fix of an error in a step; a right fix recovers with probability ``1 - FIX_FAILS``, a wrong one
with ``WRONG_WORKS``, and the fix may have changed since it last worked (``CHANGE_HAZARD`` a
priori), after which the old fix fails like any wrong one. A recovery of weight ``w`` moves the
share ``w`` of the belief to its strategy; each failure since a strategy last recovered the error
takes its own weight off that strategy's vote.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from rapidfuzz import fuzz, process

from aideploy.knowledge.classes import ERROR_CLASSES
from aideploy.knowledge.history import PastOutcome

FORGET = 0.8  # per-update decay of a (signature, step, strategy) tally
CLASS_FORGET = 0.95  # per-update decay of a (class, strategy) tally
OTHER_STEP = 0.3  # weight of evidence from another step than the failure's
FUZZY_CUTOFF = 85.0  # least rapidfuzz ratio (0..100) of a neighbour
FUZZY_LIMIT = 8  # neighbours per class searched
# a cause's most recent signatures searched for neighbours: a cause seen in hundreds of variants
# is known by its votes already, and the search stays bounded however often it recurs
FUZZY_SCAN = 256
FUZZY_CACHE_SIZE = 4096  # (signature, classes) searches remembered until a new signature comes
FIX_FAILS = 0.1  # how often a right fix is taken to fail anyway (transient causes)
WRONG_WORKS = 0.05  # how often a wrong one is taken to succeed (the error went away by itself)
CHANGE_HAZARD = 0.03  # prior chance that a signature's fix in a step has changed since it worked
# whether what fixed an error in one step fixes it in another is learnt: each time a signature's
# fix in a step is first seen (or changes) while its fix in another step is known, the two agree
# or not; the rate starts at this prior (pseudo-observations agreeing, disagreeing)
TRANSFER_PRIOR = (2.0, 1.0)

#: what a (signature, context) pair's cause is known by (see :func:`no_cause`)
CauseOf = Callable[[str, Mapping[str, str]], str]


def no_cause(signature: str, context: Mapping[str, str]) -> str:
    """The cause key when nothing parses details: the tool, if the context names one."""
    return f"tool={context.get('tool', '')}" if context.get("tool") else ""


def change_chance(failed: float) -> float:
    """P(the fix has changed) after ``failed`` failures of the strategy that last recovered it."""
    changed = CHANGE_HAZARD * math.pow(1.0 - WRONG_WORKS, failed)
    return changed / (changed + (1.0 - CHANGE_HAZARD) * math.pow(FIX_FAILS, failed))


def switch_chance(failed: float) -> float:
    """P(the fix has changed) when another strategy recovers the error after ``failed``
    failures of the one that last recovered it: the new one working is likely for a new fix
    (``1 - FIX_FAILS``) and unlikely by chance (``WRONG_WORKS``)."""
    changed = CHANGE_HAZARD * math.pow(1.0 - WRONG_WORKS, failed) * (1.0 - FIX_FAILS)
    same = (1.0 - CHANGE_HAZARD) * math.pow(FIX_FAILS, failed) * WRONG_WORKS
    return changed / (changed + same)


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """Weighted recoveries and failures of one strategy."""

    recovered: float = 0.0
    failed: float = 0.0

    @property
    def total(self) -> float:
        return self.recovered + self.failed


NO_EVIDENCE = Evidence()


@dataclass(frozen=True)
class Neighbour:
    """A signature like the one ranked (similarity 100: the same one), with its evidence."""

    signature: str
    error_class: str
    similarity: float  # 0..100, 100 = the same signature
    outcomes: Mapping[str, Evidence]  # strategy -> its weighted outcomes on that signature


@dataclass(frozen=True, slots=True)
class FixRecord:
    """The strategy most believed to fix a signature in a step, and its weighted failures there
    since it last recovered it; ``belief``: how much of the belief it holds (the weight of the
    recoveries behind it, at most 1)."""

    strategy: str
    failed: float
    belief: float = 1.0


@dataclass(frozen=True)
class SignatureEvidence:
    """The outcomes on one signature, seen from one step."""

    here: Mapping[str, Evidence]  # in this step
    elsewhere: Mapping[str, Evidence]  # summed over every other step
    last_fix: FixRecord | None  # in this step


NO_SIGNATURE_EVIDENCE = SignatureEvidence({}, {}, None)


@dataclass(frozen=True, slots=True)
class Votes:
    """How much of the (signature, step) pairs of a class (or of its step, or its cause) each
    strategy fixes now: every pair holds one vote at most, shared by its belief."""

    by_strategy: Mapping[str, float]
    total: float


NO_VOTES = Votes({}, 0.0)


# --- running tallies -------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    recovered: float = 0.0
    failed: float = 0.0

    def add(self, recovered: bool, weight: float, forget: float) -> None:
        self.recovered *= forget
        self.failed *= forget
        if recovered:
            self.recovered += weight
        else:
            self.failed += weight

    def discount(self, keep: float) -> None:
        self.recovered *= keep
        self.failed *= keep

    def evidence(self) -> Evidence:
        return Evidence(self.recovered, self.failed)


@dataclass(slots=True)
class _FixBelief:
    """Which strategy fixes a signature in a step: each one's share of the belief, and its
    weighted failures there since it last recovered it."""

    cause: str
    belief: dict[str, float] = field(default_factory=dict)
    failed: dict[str, float] = field(default_factory=dict)

    def learn(self, strategy: str, ok: bool, w: float) -> float:
        """Take one outcome of weight ``w`` (0..1) in; the share of the older tallies to keep
        (``1 - switch_chance`` when a new fix works where the believed one has failed since)."""
        if not ok:
            if strategy in self.belief:
                self.failed[strategy] = self.failed.get(strategy, 0.0) + w
            return 1.0
        keep = 1.0
        top = self.top()
        if top is not None and top.strategy != strategy and top.failed > 0:
            keep = 1.0 - w * top.belief * switch_chance(top.failed)
        for name in self.belief:
            self.belief[name] *= 1.0 - w
        self.belief[strategy] = self.belief.get(strategy, 0.0) + w
        self.failed[strategy] = self.failed.get(strategy, 0.0) * (1.0 - w)
        return keep

    def votes(self) -> dict[str, float]:
        """The pair's vote: each strategy's belief, less its failures since it last worked."""
        out = {}
        for name, b in self.belief.items():
            v = b * max(0.0, 1.0 - self.failed.get(name, 0.0))
            if v > 0.0:
                out[name] = v
        return out

    def top(self) -> FixRecord | None:
        if not self.belief:
            return None
        name = max(self.belief, key=lambda k: (self.belief[k], k))
        return FixRecord(name, self.failed.get(name, 0.0), min(1.0, self.belief[name]))


@dataclass
class _SignatureStats:
    error_class: str
    cause: str = ""
    # step -> strategy -> tally ("" = step unknown)
    by_step: dict[str, dict[str, _Tally]] = field(default_factory=dict)
    # step -> which strategy fixes this signature in that step
    fixes: dict[str, _FixBelief] = field(default_factory=dict)
    # step -> the cause's log share kept (see EvidenceStore._sync) its tallies there reflect
    synced: dict[str, float] = field(default_factory=dict)

    def seen_from(self, step: str) -> SignatureEvidence:
        here = {k: t.evidence() for k, t in self.by_step.get(step, {}).items()}
        other: dict[str, list[float]] = {}
        for s, strategies in self.by_step.items():
            if s == step:
                continue
            for name, t in strategies.items():
                acc = other.setdefault(name, [0.0, 0.0])
                acc[0] += t.recovered
                acc[1] += t.failed
        fix = self.fixes.get(step)
        return SignatureEvidence(
            here=here,
            elsewhere={k: Evidence(v[0], v[1]) for k, v in other.items()},
            last_fix=None if fix is None else fix.top(),
        )

    def weighted(self, step: str, other_step: float = OTHER_STEP) -> dict[str, Evidence]:
        """Every step's evidence, another step's weighing ``other_step``; a strategy's
        recoveries kept only as much as its fix has not changed since (its failures there since
        it last worked say how likely a change is)."""
        out: dict[str, list[float]] = {}
        for s, strategies in self.by_step.items():
            w = 1.0 if s == step else other_step
            fix = self.fixes.get(s)
            for name, t in strategies.items():
                since = fix.failed.get(name, 0.0) if fix is not None else 0.0
                keep = 1.0 - change_chance(since) if since > 0 else 1.0
                acc = out.setdefault(name, [0.0, 0.0])
                acc[0] += w * t.recovered * keep
                acc[1] += w * t.failed
        return {k: Evidence(v[0], v[1]) for k, v in out.items()}


def _step_of(o: PastOutcome) -> str:
    return str(o.context.get("step", "")) if o.context else ""


def _weight(o: PastOutcome) -> float:
    """An outcome's weight as a share of one observation (0..1)."""
    return min(max(float(o.weight), 0.0), 1.0)


def _add(into: dict[str, float], votes: Mapping[str, float], sign: float) -> None:
    for name, v in votes.items():
        into[name] = into.get(name, 0.0) + sign * v


class EvidenceStore:
    """Every recovered or failed outcome seen, as tallies, votes and the fuzzy index.

    ``cause_of`` names the cause of a (signature, context) pair (the ranker's parses the rules
    and details the signature shows); pairs with the same class, step and cause vote together.
    """

    def __init__(self, cause_of: CauseOf = no_cause) -> None:
        self.cause_of = cause_of
        self._stats: dict[str, _SignatureStats] = {}
        self._class_tallies: dict[str, dict[str, _Tally]] = {}
        # the pairs' votes per class, per (class, step) and per (class, step, cause)
        self._votes: dict[tuple[str, ...], dict[str, float]] = {}
        self._index: dict[str, list[str]] = {c: [] for c in ERROR_CLASSES}
        # (class, cause) -> its signatures: a search for neighbours of one cause reads only them
        self._cause_index: dict[tuple[str, str], list[str]] = {}
        # (class, step, cause) -> which strategy fixes that cause there, and its signatures: a
        # change of fix seen on one variant of a cause is a change for all of them
        self._cause_fix: dict[tuple[str, str, str], _FixBelief] = {}
        # (class, step, cause) -> the log of the share of the older record kept through the
        # changes of fix seen so far; each signature's tallies catch up with it when read or
        # updated (``_sync``), so a change costs nothing per signature of the cause
        self._cause_log_keep: dict[tuple[str, str, str], float] = {}
        # fixes of one signature in two steps seen to agree, to differ (weighted)
        self._transfer = [0.0, 0.0]
        # (signature, classes, cause) -> similar signature -> similarity
        self._fuzzy_cache: dict[tuple[str, tuple[str, ...], str | None], dict[str, float]] = {}

    # --- learning ---------------------------------------------------------------------------

    def learn(self, o: PastOutcome) -> None:
        """Take one outcome in (skipped ones teach nothing)."""
        if o.outcome not in ("recovered", "failed"):
            return
        ok = o.outcome == "recovered"
        w = _weight(o)
        step = _step_of(o)
        stats = self._signature_stats(o)
        tallies = stats.by_step.get(step)
        if tallies is None:
            tallies = stats.by_step[step] = {}
        fix = stats.fixes.get(step)
        cause_key = (stats.error_class, step, stats.cause)
        if fix is None:
            fix = stats.fixes[step] = _FixBelief(stats.cause)
            stats.synced[step] = self._cause_log_keep.get(cause_key, 0.0)
        else:
            self._sync(stats, step)
        before = fix.votes()
        if ok:
            self._learn_transfer(stats, step, fix, o.strategy, w)
        keep = fix.learn(o.strategy, ok, w)
        if keep < 1.0:
            for old in tallies.values():
                old.discount(keep)
        if self._learn_cause(cause_key, o, ok, w) and keep >= 1.0:
            self._sync(stats, step)  # the change was seen on the cause only: its record too
        stats.synced[step] = self._cause_log_keep.get(cause_key, 0.0)
        t = tallies.get(o.strategy)
        if t is None:
            t = tallies[o.strategy] = _Tally()
        t.add(ok, w, FORGET)
        after = fix.votes()
        if after != before:
            for key in self._vote_keys(stats.error_class, step, fix.cause):
                votes = self._votes.setdefault(key, {})
                _add(votes, before, -1.0)
                _add(votes, after, 1.0)
        t = self._class_tallies.setdefault(o.error_class, {}).get(o.strategy)
        if t is None:
            t = self._class_tallies[o.error_class][o.strategy] = _Tally()
        t.add(ok, w, CLASS_FORGET)

    def _learn_transfer(
        self, stats: _SignatureStats, step: str, fix: _FixBelief, strategy: str, w: float
    ) -> None:
        """A recovery that tells this step's fix for the first time (or a new one): does it
        agree with the fix known in the signature's other steps?"""
        top = fix.top()
        if top is not None and top.strategy == strategy:
            return
        for s, other in stats.fixes.items():
            known = other.top() if s != step else None
            if known is None:
                continue
            share = w * known.belief
            self._transfer[0 if known.strategy == strategy else 1] += share

    def transfer(self) -> float:
        """How often the fix of an error in one step has been its fix in another (smoothed
        towards ``TRANSFER_PRIOR``): what outcomes in other steps are worth."""
        agree, disagree = self._transfer
        a, b = TRANSFER_PRIOR
        return (agree + a) / (agree + disagree + a + b)

    def _learn_cause(self, key: tuple[str, str, str], o: PastOutcome, ok: bool, w: float) -> bool:
        """The cause's own belief about its fix; True when it sees the fix change, after which
        the older record of every signature of the cause in that step is discounted as the
        signature's own would be."""
        fix = self._cause_fix.get(key)
        if fix is None:
            fix = self._cause_fix[key] = _FixBelief(key[2])
        keep = fix.learn(o.strategy, ok, w)
        if keep >= 1.0:
            return False
        self._cause_log_keep[key] = self._cause_log_keep.get(key, 0.0) + math.log(max(keep, 1e-12))
        return True

    def _sync(self, stats: _SignatureStats, step: str) -> None:
        """Apply the changes of fix its cause has seen since this signature's tallies in
        ``step`` were last brought up to date."""
        now = self._cause_log_keep.get((stats.error_class, step, stats.cause), 0.0)
        then = stats.synced.get(step, 0.0)
        if now < then:
            keep = math.exp(now - then)
            for t in stats.by_step.get(step, {}).values():
                t.discount(keep)
            stats.synced[step] = now

    def _synced(self, stats: _SignatureStats) -> _SignatureStats:
        for step in stats.by_step:
            self._sync(stats, step)
        return stats

    @staticmethod
    def _vote_keys(error_class: str, step: str, cause: str) -> tuple[tuple[str, ...], ...]:
        return ((error_class,), (error_class, step), (error_class, step, cause))

    def _signature_stats(self, o: PastOutcome) -> _SignatureStats:
        stats = self._stats.get(o.signature)
        if stats is None:
            stats = _SignatureStats(o.error_class, self.cause_of(o.signature, o.context or {}))
            self._stats[o.signature] = stats
            self._index.setdefault(o.error_class, []).append(o.signature)
            self._cause_index.setdefault((o.error_class, stats.cause), []).append(o.signature)
            self._fuzzy_cache.clear()
        return stats

    # --- reading ----------------------------------------------------------------------------

    def signature(self, signature: str, step: str) -> SignatureEvidence:
        """The outcomes on this very signature, seen from ``step``."""
        stats = self._stats.get(signature)
        return NO_SIGNATURE_EVIDENCE if stats is None else self._synced(stats).seen_from(step)

    def on_class(self, error_class: str) -> dict[str, Evidence]:
        """Each strategy's recovered/failed tallies on the whole class."""
        return {k: t.evidence() for k, t in self._class_tallies.get(error_class, {}).items()}

    def votes(
        self,
        error_class: str,
        step: str | None = None,
        cause: str | None = None,
        *,
        leave_out: str = "",
    ) -> Votes:
        """The class's votes: in every step (``step`` None), in one, or in one step for one
        cause; ``leave_out``: a signature whose own vote (in ``step``) is not counted."""
        if step is None:
            key: tuple[str, ...] = (error_class,)
        elif cause is None:
            key = (error_class, step)
        else:
            key = (error_class, step, cause)
        votes = dict(self._votes.get(key, {}))
        stats = self._stats.get(leave_out) if leave_out else None
        if stats is not None and stats.error_class == error_class:
            for s, fix in stats.fixes.items():
                if (step is None or s == step) and (cause is None or fix.cause == cause):
                    _add(votes, fix.votes(), -1.0)
        clean = {k: v for k, v in votes.items() if v > 1e-9}
        return Votes(clean, sum(clean.values()))

    def cause(self, signature: str, context: Mapping[str, str]) -> str:
        """The cause key of a failure (as its pairs vote under it)."""
        return self.cause_of(signature, context)

    def cause_learnt(self, o: PastOutcome) -> str:
        """The cause key an outcome was learnt under (its signature's, once seen)."""
        stats = self._stats.get(o.signature)
        return stats.cause if stats is not None else self.cause_of(o.signature, o.context or {})

    def neighbours(
        self, signature: str, classes: Iterable[str], step: str = "", cause: str | None = None
    ) -> list[Neighbour]:
        """This signature (if seen) and its fuzzy neighbours among the given classes' signatures
        (of the same ``cause``, when given: the same rules, named details and tool), most
        similar first, each with its evidence (another step's weighing ``OTHER_STEP`` times
        the learnt share of fixes that carried over between steps, :meth:`transfer`)."""
        out: list[Neighbour] = []
        other_step = OTHER_STEP * self.transfer()
        exact = self._stats.get(signature)
        if exact is not None:
            out.append(
                Neighbour(
                    signature,
                    exact.error_class,
                    100.0,
                    self._synced(exact).weighted(step, other_step),
                )
            )
        if not signature:
            return out
        for sig, similarity in self._similar(signature, tuple(classes), cause).items():
            st = self._stats[sig]
            out.append(
                Neighbour(
                    sig, st.error_class, similarity, self._synced(st).weighted(step, other_step)
                )
            )
        out.sort(key=attrgetter("similarity"), reverse=True)  # stable: ties keep their order
        return out[: FUZZY_LIMIT + 1]

    def _similar(
        self, signature: str, classes: tuple[str, ...], cause: str | None = None
    ) -> dict[str, float]:
        """Signatures of these classes (and of this ``cause``, when given) like this one (not
        itself), with their similarity."""
        key = (signature, classes, cause)
        matches = self._fuzzy_cache.get(key)
        if matches is None:  # the matches change only when a new signature is indexed
            matches = {}
            for c in classes:  # each signature is indexed under one class only
                choices = (
                    self._index.get(c)
                    if cause is None
                    else self._cause_index.get((c, cause), [])[-FUZZY_SCAN:]
                )
                if not choices:
                    continue
                matches.update(
                    (sig, float(sim))
                    for sig, sim, _ in process.extract(
                        signature,
                        choices,
                        scorer=fuzz.ratio,
                        score_cutoff=FUZZY_CUTOFF,
                        limit=FUZZY_LIMIT,
                    )
                    if sig != signature
                )
            if len(self._fuzzy_cache) > FUZZY_CACHE_SIZE:
                self._fuzzy_cache.clear()
            self._fuzzy_cache[key] = matches
        return matches
