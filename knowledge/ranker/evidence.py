"""Evidence: what the recorded outcomes say, kept up to date one outcome at a time.

Per signature and step, a forgetting tally of each strategy's weighted recoveries and failures,
and the strategy that last recovered it there with its failures since (a change of fix is
detected from those); per error class, the strategies' tallies and one vote per (signature,
step) for the strategy that fixes it now; and an index of signatures by class for the fuzzy
neighbour search (rapidfuzz).

The change detection belongs to the one-fix model the scoring uses as well: one strategy is
taken to be the fix of an error in a step; a right fix recovers with probability
``1 - FIX_FAILS``, a wrong one with ``WRONG_WORKS``, and the fix may have changed since it last
worked (``CHANGE_HAZARD`` a priori), after which the old fix fails like any wrong one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
FUZZY_CACHE_SIZE = 4096  # (signature, classes) searches remembered until a new signature comes
FIX_WEIGHT = 0.5  # least weight of a recovery that makes its strategy the signature's last fix
FIX_FAILS = 0.1  # how often a right fix is taken to fail anyway (transient causes)
WRONG_WORKS = 0.05  # how often a wrong one is taken to succeed (the error went away by itself)
CHANGE_HAZARD = 0.03  # prior chance that a signature's fix in a step has changed since it worked


def change_chance(failed: float) -> float:
    """P(the fix has changed) after ``failed`` failures of the strategy that last recovered it."""
    changed = CHANGE_HAZARD * math.pow(1.0 - WRONG_WORKS, failed)
    return changed / (changed + (1.0 - CHANGE_HAZARD) * math.pow(FIX_FAILS, failed))


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
    """The strategy that last recovered a signature in a step, and its weighted failures there
    since."""

    strategy: str
    failed: float


@dataclass(frozen=True)
class SignatureEvidence:
    """The outcomes on one signature, seen from one step."""

    here: Mapping[str, Evidence]  # in this step
    elsewhere: Mapping[str, Evidence]  # summed over every other step
    last_fix: FixRecord | None  # in this step


NO_SIGNATURE_EVIDENCE = SignatureEvidence({}, {}, None)


@dataclass(frozen=True, slots=True)
class Votes:
    """How many (signature, step) pairs of a class each strategy fixes now (its last fix holds)."""

    by_strategy: Mapping[str, int]
    total: int


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
class _LastFix:
    """The strategy that last recovered a signature in a step, and its failures there since."""

    strategy: str
    failed: float = 0.0  # weighted
    failures: int = 0

    @property
    def holds(self) -> bool:
        """Nothing has failed it since: it counts as the signature's fix in its class's votes."""
        return self.failures == 0


@dataclass
class _SignatureStats:
    error_class: str
    # step -> strategy -> tally ("" = step unknown)
    by_step: dict[str, dict[str, _Tally]] = field(default_factory=dict)
    # step -> the strategy that last recovered this signature in that step
    last_fix: dict[str, _LastFix] = field(default_factory=dict)

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
        last = self.last_fix.get(step)
        return SignatureEvidence(
            here=here,
            elsewhere={k: Evidence(v[0], v[1]) for k, v in other.items()},
            last_fix=None if last is None else FixRecord(last.strategy, last.failed),
        )

    def weighted(self, step: str) -> dict[str, Evidence]:
        """Every step's evidence, another step's weighing ``OTHER_STEP``."""
        out: dict[str, list[float]] = {}
        for s, strategies in self.by_step.items():
            w = 1.0 if s == step else OTHER_STEP
            for name, t in strategies.items():
                acc = out.setdefault(name, [0.0, 0.0])
                acc[0] += w * t.recovered
                acc[1] += w * t.failed
        return {k: Evidence(v[0], v[1]) for k, v in out.items()}


def _step_of(o: PastOutcome) -> str:
    return str(o.context.get("step", "")) if o.context else ""


class EvidenceStore:
    """Every recovered or failed outcome seen, as tallies, votes and the fuzzy index."""

    def __init__(self) -> None:
        self._stats: dict[str, _SignatureStats] = {}
        self._class_tallies: dict[str, dict[str, _Tally]] = {}
        # strategy -> how many (signature, step) pairs it fixes now, per class and per
        # (class, step)
        self._votes: dict[str, dict[str, int]] = {}
        self._votes_in_step: dict[tuple[str, str], dict[str, int]] = {}
        self._index: dict[str, list[str]] = {c: [] for c in ERROR_CLASSES}
        # (signature, classes) -> similar signature -> similarity
        self._fuzzy_cache: dict[tuple[str, tuple[str, ...]], dict[str, float]] = {}

    # --- learning ---------------------------------------------------------------------------

    def learn(self, o: PastOutcome) -> None:
        """Take one outcome in (skipped ones teach nothing)."""
        if o.outcome not in ("recovered", "failed"):
            return
        ok = o.outcome == "recovered"
        w = max(float(o.weight), 0.0)
        step = _step_of(o)
        stats = self._signature_stats(o)
        tallies = stats.by_step.get(step)
        if tallies is None:
            tallies = stats.by_step[step] = {}
        last = stats.last_fix.get(step)
        before = last.strategy if last is not None and last.holds else None
        after = self._update_last_fix(stats, step, o.strategy, ok, w)
        t = tallies.get(o.strategy)
        if t is None:
            t = tallies[o.strategy] = _Tally()
        t.add(ok, w, FORGET)
        if after != before:
            self._move_vote(stats.error_class, step, before, after)
        t = self._class_tallies.setdefault(o.error_class, {}).get(o.strategy)
        if t is None:
            t = self._class_tallies[o.error_class][o.strategy] = _Tally()
        t.add(ok, w, CLASS_FORGET)

    def _signature_stats(self, o: PastOutcome) -> _SignatureStats:
        stats = self._stats.get(o.signature)
        if stats is None:
            stats = _SignatureStats(o.error_class)
            self._stats[o.signature] = stats
            self._index.setdefault(o.error_class, []).append(o.signature)
            self._fuzzy_cache.clear()
        return stats

    @staticmethod
    def _update_last_fix(
        stats: _SignatureStats, step: str, strategy: str, ok: bool, w: float
    ) -> str | None:
        """Record the outcome against the step's last fix; the fix that holds afterwards.

        A recovery (of real weight) makes its strategy the last fix; when another strategy
        works where the last fix has failed since, what came before the likely change keeps
        only as much weight as no change is still likely. A failure of the last fix counts
        against it.
        """
        last = stats.last_fix.get(step)
        if ok and w >= FIX_WEIGHT:
            if last is not None and last.strategy != strategy and last.failed > 0:
                keep = 1.0 - change_chance(last.failed)
                for old in stats.by_step[step].values():
                    old.discount(keep)
            last = stats.last_fix[step] = _LastFix(strategy)
        elif not ok and last is not None and last.strategy == strategy:
            last.failed += w
            last.failures += 1
        return last.strategy if last is not None and last.holds else None

    def _move_vote(
        self, error_class: str, step: str, before: str | None, after: str | None
    ) -> None:
        for votes in (
            self._votes_in_step.setdefault((error_class, step), {}),
            self._votes.setdefault(error_class, {}),
        ):
            if before is not None:
                votes[before] -= 1
            if after is not None:
                votes[after] = votes.get(after, 0) + 1

    # --- reading ----------------------------------------------------------------------------

    def signature(self, signature: str, step: str) -> SignatureEvidence:
        """The outcomes on this very signature, seen from ``step``."""
        stats = self._stats.get(signature)
        return NO_SIGNATURE_EVIDENCE if stats is None else stats.seen_from(step)

    def on_class(self, error_class: str) -> dict[str, Evidence]:
        """Each strategy's recovered/failed tallies on the whole class."""
        return {k: t.evidence() for k, t in self._class_tallies.get(error_class, {}).items()}

    def votes(self, error_class: str, step: str | None = None) -> Votes:
        """The class's votes, in every step (``step`` None) or in one."""
        votes = (
            self._votes.get(error_class, {})
            if step is None
            else self._votes_in_step.get((error_class, step), {})
        )
        return Votes(dict(votes), sum(votes.values()))

    def neighbours(self, signature: str, classes: Iterable[str], step: str = "") -> list[Neighbour]:
        """This signature (if seen) and its fuzzy neighbours among the given classes' signatures,
        most similar first, each with its evidence (another step's weighing ``OTHER_STEP``)."""
        out: list[Neighbour] = []
        exact = self._stats.get(signature)
        if exact is not None:
            out.append(Neighbour(signature, exact.error_class, 100.0, exact.weighted(step)))
        if not signature:
            return out
        for sig, similarity in self._similar(signature, tuple(classes)).items():
            st = self._stats[sig]
            out.append(Neighbour(sig, st.error_class, similarity, st.weighted(step)))
        out.sort(key=attrgetter("similarity"), reverse=True)  # stable: ties keep their order
        return out[: FUZZY_LIMIT + 1]

    def _similar(self, signature: str, classes: tuple[str, ...]) -> dict[str, float]:
        """Signatures of these classes like this one (not itself), with their similarity."""
        key = (signature, classes)
        matches = self._fuzzy_cache.get(key)
        if matches is None:  # the matches change only when a new signature is indexed
            matches = {}
            for c in classes:  # each signature is indexed under one class only
                choices = self._index.get(c)
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
