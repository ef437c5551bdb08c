"""The learning recovery advisor: rules + fuzzy neighbours + a logistic model.

Detection scores each error class from the regex rules and a text classifier trained on the
bundled corpus (train split and synthetic examples). Candidates come from rule hits, the class
defaults of the likely classes, an exact signature hit in the history and fuzzy neighbours
(rapidfuzz over masked signatures, narrowed by class). Each candidate's score is built level by
level, each Beta-smoothed towards the one before it:

* the *prior*: the strongest rule (or class default) that proposes it;
* the *class*: the share of this class's signatures (all steps, then this step) that the strategy
  fixes now - one vote per signature, so one error that recurs a lot does not speak for its class;
* the *neighbours*: similarity-weighted, import-weight-aware successes and failures on fuzzy
  neighbours, then on this very signature in other steps (exponential forgetting throughout, so
  a strategy that stops working loses its place within a few outcomes);
* the *model*: P(recovered) from a LogisticRegression over (signature tokens, strategy, class,
  context), weighted down as direct evidence grows;
* last, the outcomes on this signature in this step: one strategy is taken to be the fix, so
  every strategy's successes and failures here move probability between the candidates (a
  favourite that keeps failing hands its share to the untried ones, manual intervention
  included), and failures of the strategy that last recovered it here raise the chance that
  its fix has changed, after which its older record no longer counts.

Every candidate carries a readable ``why``; :meth:`Ranker.explain` returns it all structured.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import platformdirs
from rapidfuzz import fuzz, process

from aideploy.core.recovery import Candidate, Failure, Outcome, Risk, outcome_context
from aideploy.core.result import Result
from aideploy.knowledge.classes import (
    ERROR_CLASSES,
    UNKNOWN,
    related_strategies,
    risk_of,
    strategies_for,
)
from aideploy.knowledge.classifier import TextClassifier, cache_key, load_cached, store_cached
from aideploy.knowledge.corpus import Example, load_bundled, train_examples
from aideploy.knowledge.history import History, PastOutcome
from aideploy.knowledge.outcome_model import OutcomeModel
from aideploy.knowledge.rules import RuleHit, RuleSet
from aideploy.knowledge.signature import signature_of

MANUAL = "manual_intervention"
POSITION_DECAY = (1.0, 0.55, 0.32, 0.2, 0.14, 0.1)
FORGET = 0.8  # per-update decay of a (signature, step, strategy) tally
CLASS_FORGET = 0.95
OTHER_STEP = 0.3  # weight of evidence from another step than the failure's
FUZZY_CUTOFF = 85.0
FUZZY_LIMIT = 8
# pseudo-observations each level of evidence gives the level above it (rule/default prior ->
# class -> class in this step -> neighbours -> this signature in other steps -> in this step)
CLASS_PRIOR_STRENGTH = 1.5
CLASS_STEP_STRENGTH = 2.0
NEIGHBOUR_STRENGTH = 2.0
OTHER_STEPS_STRENGTH = 1.5
STUCK_AFTER = 3  # automatic strategies failed here (none working) before manual is not held back
FIX_FAILS = 0.1  # how often a right fix is taken to fail anyway (transient causes)
WRONG_WORKS = 0.05  # how often a wrong one is taken to succeed (the error went away by itself)
CHANGE_HAZARD = 0.03  # prior chance that a signature's fix in a step has changed since it worked
MODEL_WEIGHT = 0.1
CLASS_CUTOFF = 0.12  # classes under this normalised score bring no default strategies
MANUAL_SCORE = 0.02
LONG_TAIL_PRIOR = 0.08
HOPELESS = 0.1  # a fresh candidate under this chance is not put first ahead of a demoted one
# manual intervention ends the deployment's automatic recovery, so unless it has recovered this
# very signature before it is ordered as if its score were this fraction of what it is
MANUAL_ORDER = 0.25


# --- explanation values ----------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    signature: str
    error_class: str
    similarity: float  # 0..100, 100 = the same signature
    outcomes: Mapping[str, tuple[float, float]]  # strategy -> (recovered, failed), weighted


@dataclass(frozen=True)
class CandidateDetail:
    strategy: str
    score: float
    risk: str
    prior: float
    prior_source: str
    class_recovered: float
    class_failed: float
    neighbour_recovered: float
    neighbour_failed: float
    model_probability: float | None
    decided_by: str
    why: str
    signature_recovered: float = 0.0  # recoveries on this very signature (any step), weighted
    failed_since_it_worked: float = 0.0  # its failures here since it last recovered this error


@dataclass(frozen=True)
class Explanation:
    signature: str
    error_class: str
    class_scores: list[tuple[str, float]]
    rule_hits: list[RuleHit]
    details: Mapping[str, str]
    neighbours: list[Neighbour]
    candidates: list[CandidateDetail]


@dataclass(frozen=True)
class Analysis:
    """What detection made of a text (cached between detect and candidates)."""

    signature: str
    hits: list[RuleHit]
    class_scores: list[tuple[str, float]]
    details: Mapping[str, str]

    @property
    def error_class(self) -> str:
        return self.class_scores[0][0] if self.class_scores else UNKNOWN


@dataclass
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


@dataclass
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

    def split(
        self, step: str
    ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        """(evidence in this step, evidence in every other step)."""
        here = {k: (t.recovered, t.failed) for k, t in self.by_step.get(step, {}).items()}
        other: dict[str, list[float]] = {}
        for s, strategies in self.by_step.items():
            if s == step:
                continue
            for name, t in strategies.items():
                acc = other.setdefault(name, [0.0, 0.0])
                acc[0] += t.recovered
                acc[1] += t.failed
        return here, {k: (v[0], v[1]) for k, v in other.items()}

    def evidence(self, step: str) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = {}
        for s, strategies in self.by_step.items():
            w = 1.0 if s == step else OTHER_STEP
            for name, t in strategies.items():
                acc = out.setdefault(name, [0.0, 0.0])
                acc[0] += w * t.recovered
                acc[1] += w * t.failed
        return {k: (v[0], v[1]) for k, v in out.items()}


# --- the bundled classifier, trained once per process ---------------------------------------


@lru_cache(maxsize=1)
def _bundled_classifier() -> TextClassifier:
    """Trained once per machine: cached in the user's cache directory as plain arrays, keyed by
    the training data and the scikit-learn version (see
    :func:`~aideploy.knowledge.classifier.load_cached`). A cache hit imports no scikit-learn."""
    usable = [e for e in train_examples(load_bundled()) if e.split != "test"]
    texts, labels = [e.text for e in usable], [e.error_class for e in usable]
    directory = classifier_cache_dir()
    key = cache_key(texts, labels)
    cached = load_cached(directory, key)
    if cached is not None:
        return cached
    classifier = TextClassifier().fit(texts, labels)
    store_cached(directory, key, classifier)
    return classifier


def classifier_cache_dir() -> Path:
    """``$AIDEPLOY_CACHE_DIR`` or the user's cache directory for aideploy, then classifier/."""
    env = os.environ.get("AIDEPLOY_CACHE_DIR")
    base = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("aideploy"))
    return base / "classifier"


def _train_classifier(examples: Sequence[Example]) -> TextClassifier:
    usable = [e for e in examples if e.split != "test"]
    return TextClassifier().fit([e.text for e in usable], [e.error_class for e in usable])


def _one_fix_posterior(
    prior: Mapping[str, float], here: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """P(each candidate is the fix) given its outcomes on this signature in this step.

    One strategy is taken to be the fix of an error in a step: a right fix recovers with
    probability ``1 - FIX_FAILS``, a wrong one with ``WRONG_WORKS``. Each candidate's prior is
    its share of the (class/neighbour/other-step) scores; the outcomes of *every* strategy tried
    here then weigh in, so repeated failures of the favourite move the mass to the untried
    candidates (manual intervention among them) rather than only lowering the favourite.
    """
    total = sum(prior.values()) or 1.0
    up, down = math.log((1.0 - FIX_FAILS) / WRONG_WORKS), math.log(FIX_FAILS / (1.0 - WRONG_WORKS))
    logs = {}
    for name, p in prior.items():
        rec, fail = here.get(name, (0.0, 0.0))
        if 0.0 < rec + fail < 1.0:  # a fraction of one (imported, down-weighted) outcome
            rec, fail = rec * (rec + fail), fail * (rec + fail)
        logs[name] = math.log(max(p / total, 1e-9)) + rec * up + fail * down
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


def _change_chance(failed: float) -> float:
    """P(the fix has changed) after ``failed`` failures of the strategy that last recovered it."""
    changed = CHANGE_HAZARD * math.pow(1.0 - WRONG_WORKS, failed)
    return changed / (changed + (1.0 - CHANGE_HAZARD) * math.pow(FIX_FAILS, failed))


def _allow_change(
    posterior: Mapping[str, float], prior: Mapping[str, float], fix: str, failed: float
) -> dict[str, float]:
    """Blend in the chance that the fix has changed since ``fix`` last recovered the error here.

    ``failed`` (weighted) failures of ``fix`` since then are chance (``FIX_FAILS`` each) or a
    change (``CHANGE_HAZARD`` a priori, after which it fails like any wrong strategy); given a
    change, only those failures count against the prior, not the record from before it. Two
    failures since it last worked make a change about three times likelier than chance, so a fix
    that worked many times stops being tried first without waiting for its old successes to
    decay. When another strategy then recovers it, :meth:`Ranker._learn` discounts the older
    record the same way, so the new fix stays first.
    """
    c = _change_chance(failed)
    since = _one_fix_posterior(prior, {fix: (0.0, failed)})
    return {n: (1.0 - c) * v + c * since[n] for n, v in posterior.items()}


class Ranker:
    """RecoveryAdvisor that learns from every recorded outcome."""

    def __init__(
        self,
        history: History,
        rules: RuleSet | None = None,
        *,
        corpus: Sequence[Example] | None = None,
        recorder: Callable[[PastOutcome], None] | None = None,
        refit_every: int = 50,
        explore: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.rules = rules if rules is not None else RuleSet()
        self.classifier = (
            _bundled_classifier() if corpus is None else _train_classifier(list(corpus))
        )
        self.recorder = recorder
        self.refit_every = refit_every
        self.explore = max(0.0, min(explore, 0.2))
        self._rng = random.Random(seed)
        self._explored: set[str] = set()
        self.model = OutcomeModel()
        self._outcomes: list[PastOutcome] = []
        self._since_fit = 0
        self._stats: dict[str, _SignatureStats] = {}
        self._class_stats: dict[tuple[str, str], dict[str, _Tally]] = {}
        # (class, step or "*") -> strategy -> how many (signature, step) pairs it fixes now
        self._votes: dict[tuple[str, str], dict[str, int]] = {}
        self._index: dict[str, list[str]] = {c: [] for c in ERROR_CLASSES}
        self._analysis_cache: dict[str, Analysis] = {}
        self._fuzzy_cache: dict[tuple[str, tuple[str, ...]], list[tuple[str, float]]] = {}
        past = list(history.past_outcomes())
        past.sort(key=lambda o: o.at.timestamp() if o.at else 0.0)
        add = self.model.add
        for o in past:  # one pass: tallies, fuzzy index and the model's aggregate
            self._learn(o)
            add(o)
        self._outcomes = past
        self.refit()

    # --- learning -----------------------------------------------------------------------

    def _learn(self, o: PastOutcome) -> None:
        if o.outcome not in ("recovered", "failed"):
            return
        ok = o.outcome == "recovered"
        w = max(float(o.weight), 0.0)
        step = str(o.context.get("step", "")) if o.context else ""
        stats = self._stats.get(o.signature)
        if stats is None:
            stats = _SignatureStats(o.error_class)
            self._stats[o.signature] = stats
            self._index.setdefault(o.error_class, []).append(o.signature)
            self._fuzzy_cache.clear()
        tallies = stats.by_step.get(step)
        if tallies is None:
            tallies = stats.by_step[step] = {}
        last = stats.last_fix.get(step)
        before = last.strategy if last is not None and last.holds else None
        if ok and w >= 0.5:
            if last is not None and last.strategy != o.strategy and last.failed > 0:
                # another strategy works where the last fix has failed since: what came before
                # the likely change counts only as much as no change is still likely
                keep = 1.0 - _change_chance(last.failed)
                for old in tallies.values():
                    old.recovered *= keep
                    old.failed *= keep
            last = stats.last_fix[step] = _LastFix(o.strategy)
        elif not ok and last is not None and last.strategy == o.strategy:
            last.failed += w
            last.failures += 1
        t = tallies.get(o.strategy)
        if t is None:
            t = tallies[o.strategy] = _Tally()
        t.add(ok, w, FORGET)
        after = last.strategy if last is not None and last.holds else None
        if after != before:
            for key in ((stats.error_class, step), (stats.error_class, "*")):
                votes = self._votes.setdefault(key, {})
                if before is not None:
                    votes[before] -= 1
                if after is not None:
                    votes[after] = votes.get(after, 0) + 1
        for key in ((o.error_class, step), (o.error_class, "*")):
            tallies = self._class_stats.get(key)
            if tallies is None:
                tallies = self._class_stats[key] = {}
            t = tallies.get(o.strategy)
            if t is None:
                t = tallies[o.strategy] = _Tally()
            t.add(ok, w, CLASS_FORGET)

    def refit(self) -> None:
        """Fit the outcome model on every outcome seen so far."""
        self.model.refit()
        self._since_fit = 0

    def record(
        self,
        failure: Failure,
        strategy: str,
        outcome: Outcome,
        *,
        duration: float,
        decided_by: str,
        deployment_id: str | None = None,
    ) -> None:
        context = outcome_context(failure)
        past = PastOutcome(
            signature=failure.signature,
            error_class=failure.error_class,
            strategy=strategy,
            outcome=outcome.value,
            weight=1.0,
            context=context,
            at=datetime.now(UTC),
            deployment_id=deployment_id,
        )
        self._learn(past)
        self.model.add(past)
        self._outcomes.append(past)
        if self.recorder is not None:
            self.recorder(past)
        self._since_fit += 1
        if self.refit_every and self._since_fit >= self.refit_every:
            self.refit()

    # --- detection ----------------------------------------------------------------------

    def analyze_many(self, texts: Sequence[str]) -> list[Analysis]:
        """Signature, rule hits, class scores and details of many texts (batched classifier)."""
        probs = self.classifier.predict_proba(list(texts)) if texts else []
        out = []
        for text, p in zip(texts, probs, strict=True):
            hits = self.rules.match(text)
            out.append(
                Analysis(
                    signature=signature_of(text),
                    hits=hits,
                    class_scores=self._combine(self.rules.class_scores(hits), p),
                    details=self.rules.details(text, hits),
                )
            )
        return out

    def analyze(self, text: str) -> Analysis:
        cached = self._analysis_cache.get(text)
        if cached is None:
            cached = self.analyze_many([text])[0]
            if len(self._analysis_cache) > 512:
                self._analysis_cache.clear()
            self._analysis_cache[text] = cached
        return cached

    @staticmethod
    def _combine(rule: Mapping[str, float], model: Mapping[str, float]) -> list[tuple[str, float]]:
        scores: dict[str, float] = {}
        for c in ERROR_CLASSES:
            r, m = rule.get(c, 0.0), model.get(c, 0.0)
            scores[c] = 1.0 - (1.0 - r) * (1.0 - m) if r or m else 0.0
        if not any(rule.values()) and max(model.values(), default=0.0) < 0.25:
            scores[UNKNOWN] = max(scores[UNKNOWN], 0.3)
        total = sum(scores.values()) or 1.0
        ranked = sorted(((c, s / total) for c, s in scores.items()), key=lambda cs: -cs[1])
        return ranked

    def detect(self, step: str, result: Result) -> Failure:
        text = result.output or result.command
        a = self.analyze(text)
        return Failure(
            step=step,
            result=result,
            error_class=a.error_class,
            signature=a.signature,
            details=dict(a.details),
        )

    # --- ranking ------------------------------------------------------------------------

    def neighbours(self, signature: str, classes: Iterable[str], step: str = "") -> list[Neighbour]:
        out: list[Neighbour] = []
        exact = self._stats.get(signature)
        if exact is not None:
            out.append(Neighbour(signature, exact.error_class, 100.0, exact.evidence(step)))
        if not signature:
            return out
        key = (signature, tuple(classes))
        matches = self._fuzzy_cache.get(key)
        if matches is None:  # the matches change only when a new signature is indexed
            matches = []
            for c in key[1]:
                choices = self._index.get(c)
                if not choices:
                    continue
                matches.extend(
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
            if len(self._fuzzy_cache) > 4096:
                self._fuzzy_cache.clear()
            self._fuzzy_cache[key] = matches
        for sig, sim in matches:
            st = self._stats[sig]
            out.append(Neighbour(sig, st.error_class, sim, st.evidence(step)))
        out.sort(key=lambda n: -n.similarity)
        return out[: FUZZY_LIMIT + 1]

    def _class_evidence(self, error_class: str) -> dict[str, tuple[float, float]]:
        """Recovered/failed tallies of each strategy on the whole class (for explanations)."""
        every = self._class_stats.get((error_class, "*"), {})
        return {k: (t.recovered, t.failed) for k, t in every.items()}

    def rank(
        self, text: str, step: str = "", analysis: Analysis | None = None
    ) -> tuple[Analysis, list[CandidateDetail]]:
        """Analysis and scored candidates of a raw error text (no exploration)."""
        a = analysis or self.analyze(text)
        result = Result(command="", host="", exit_code=1, stdout="", stderr=text, duration=0.0)
        failure = Failure(step, result, a.error_class, a.signature, dict(a.details))
        _, _, details = self._score(failure, a)
        return a, details

    def _score(
        self, failure: Failure, analysis: Analysis | None = None
    ) -> tuple[Analysis, list[Neighbour], list[CandidateDetail]]:
        a = analysis or self.analyze(failure.result.output or failure.result.command)
        signature = failure.signature or a.signature
        step = failure.step
        scores = dict(a.class_scores)
        main_class = failure.error_class if failure.error_class in scores else a.error_class
        classes = [main_class] + [
            c for c, s in a.class_scores[:3] if c != main_class and s >= CLASS_CUTOFF
        ]

        # priors: strongest proposer of each strategy
        prior: dict[str, tuple[float, str]] = {}

        def propose(name: str, value: float, source: str) -> None:
            if value > prior.get(name, (-1.0, ""))[0]:
                prior[name] = (value, source)

        for h in a.hits:
            for pos, name in enumerate(h.strategies):
                decay = POSITION_DECAY[min(pos, len(POSITION_DECAY) - 1)]
                propose(name, h.weight * decay, f"rule {h.rule!r} ({h.error_class})")
        for c in classes:
            cs = max(scores.get(c, 0.0), 0.5 if c == main_class else 0.0)
            for pos, name in enumerate(strategies_for(c)):
                decay = POSITION_DECAY[min(pos, len(POSITION_DECAY) - 1)]
                propose(name, cs * decay * 0.9, f"class {c} default #{pos + 1}")
        for name in (*related_strategies(main_class), "retry_with_backoff"):
            propose(name, LONG_TAIL_PRIOR, f"catalogue: applies to {main_class}")
        class_all = self._class_evidence(main_class)
        votes_all = self._votes.get((main_class, "*"), {})
        votes_step = self._votes.get((main_class, step), {})
        n_all, n_step = sum(votes_all.values()), sum(votes_step.values())
        for name in class_all:
            propose(name, 0.05, f"seen on class {main_class}")

        neighbours = self.neighbours(signature, classes, step)
        neigh_ev: dict[str, list[float]] = {}  # fuzzy neighbours only, similarity-weighted
        for n in neighbours:
            if n.similarity >= 100.0:
                continue
            w = 0.8 * ((n.similarity - FUZZY_CUTOFF) / (100.0 - FUZZY_CUTOFF)) ** 2
            for name, (rec, fail) in n.outcomes.items():
                acc = neigh_ev.setdefault(name, [0.0, 0.0])
                acc[0] += w * rec
                acc[1] += w * fail
                propose(name, 0.05, "neighbour evidence")
        exact = self._stats.get(signature)
        here, elsewhere = exact.split(step) if exact is not None else ({}, {})
        for name in (*here, *elsewhere):
            propose(name, 0.05, "tried on this signature before")
        # several automatic strategies tried on this signature in this step and all mostly
        # failing: manual intervention is ranked by its own score, not held back
        autos = [(r, f) for n, (r, f) in here.items() if n != MANUAL]
        stuck = len(autos) >= STUCK_AFTER and all(2.0 * r < f for r, f in autos)

        propose(MANUAL, MANUAL_SCORE, "always available")
        names = list(prior)
        model_p = self.model.predict(signature, main_class, names, outcome_context(failure))

        details: list[CandidateDetail] = []
        rows = []
        for name in names:
            p0, source = prior[name]
            # each level refines the one above it: Beta-smoothed towards the coarser estimate;
            # class level: the share of this class's signatures that this strategy fixes now
            crec, cfail = class_all.get(name, (0.0, 0.0))
            post = (votes_all.get(name, 0) + CLASS_PRIOR_STRENGTH * p0) / (
                n_all + CLASS_PRIOR_STRENGTH
            )
            post = (votes_step.get(name, 0) + CLASS_STEP_STRENGTH * post) / (
                n_step + CLASS_STEP_STRENGTH
            )
            frec, ffail = neigh_ev.get(name, [0.0, 0.0])
            post = (frec + NEIGHBOUR_STRENGTH * post) / (frec + ffail + NEIGHBOUR_STRENGTH)
            orec, ofail = elsewhere.get(name, (0.0, 0.0))
            post = (orec + OTHER_STEPS_STRENGTH * post) / (orec + ofail + OTHER_STEPS_STRENGTH)
            m = model_p.get(name)
            if m is not None:
                lam = MODEL_WEIGHT / (1.0 + frec + ffail + orec + ofail)
                post = (1.0 - lam) * post + lam * m
            rows.append((name, p0, source, crec, cfail, frec, ffail, orec, ofail, m, post))
        scores = {r[0]: r[-1] for r in rows}
        last = exact.last_fix.get(step) if exact is not None else None
        if here:
            prior_scores = scores
            scores = _one_fix_posterior(prior_scores, here)
            if last is not None and last.failed > 0:
                scores = _allow_change(scores, prior_scores, last.strategy, last.failed)
        if stuck:
            stuck_source = f"automatic strategies keep failing on this signature in step {step}"
        for name, p0, source, crec, cfail, frec, ffail, orec, ofail, m, _ in rows:
            hrec, hfail = here.get(name, (0.0, 0.0))
            if name == MANUAL and stuck:
                source = stuck_source
            nrec, nfail = frec + orec + hrec, ffail + ofail + hfail
            if nrec + nfail >= 0.5:
                decided = "history"
            elif crec + cfail >= 0.5:
                decided = "history" if m is None else "model"
            else:
                decided = "rule"
            details.append(
                CandidateDetail(
                    strategy=name,
                    score=round(scores[name], 4),
                    risk=risk_of(name).value,
                    prior=round(p0, 4),
                    prior_source=source,
                    class_recovered=round(crec, 3),
                    class_failed=round(cfail, 3),
                    neighbour_recovered=round(nrec, 3),
                    neighbour_failed=round(nfail, 3),
                    model_probability=None if m is None else round(m, 4),
                    decided_by=decided,
                    why="",
                    signature_recovered=round(orec + hrec, 3),
                    failed_since_it_worked=(
                        last.failed if last is not None and last.strategy == name else 0.0
                    ),
                )
            )
        risk_order = {Risk.LOW.value: 0, Risk.MEDIUM.value: 1, Risk.HIGH.value: 2}
        details.sort(key=lambda d: (-d.score, risk_order.get(d.risk, 3), d.strategy))
        described = [self._describe(d, neighbours, main_class) for d in details]
        return a, neighbours, described

    @staticmethod
    def _describe(d: CandidateDetail, neighbours: list[Neighbour], cls: str) -> CandidateDetail:
        if d.strategy == MANUAL and d.prior <= MANUAL_SCORE and not d.neighbour_recovered:
            why = "manual intervention: pause, explain, keep state for resume (the fallback)"
        else:
            parts = [f"{d.prior_source} gives prior {d.prior:.2f}"]
            if d.class_recovered or d.class_failed:
                parts.append(
                    f"on class {cls}: {d.class_recovered:.1f} recovered / "
                    f"{d.class_failed:.1f} failed"
                )
            seen = []
            for n in neighbours:
                rec, fail = n.outcomes.get(d.strategy, (0.0, 0.0))
                if rec or fail:
                    label = "same signature" if n.similarity >= 100 else f"sim {n.similarity:.0f}"
                    seen.append(f"{label}: {rec:.1f} recovered / {fail:.1f} failed")
            if seen:
                parts.append("neighbours: " + "; ".join(seen[:4]))
            if d.failed_since_it_worked > 0:
                parts.append(
                    f"failed {d.failed_since_it_worked:.1f} here since it last recovered this "
                    f"error: {_change_chance(d.failed_since_it_worked):.0%} chance its fix changed"
                )
            if d.model_probability is not None:
                parts.append(f"model p(recovered)={d.model_probability:.2f}")
            parts.append(f"risk {d.risk}")
            why = "; ".join(parts)
        return CandidateDetail(**{**d.__dict__, "why": why})

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        """Ranked candidates for a failure.

        Strategies in ``exclude`` (already failed for this error in this deployment, in the
        order they failed; a name may appear once per failure) are not dropped but demoted:

        * first comes the best fresh candidate with a real chance (at least ``HOPELESS``, once
          the share left by a strategy with a record on this very signature is taken off);
          when no fresh candidate has one, the best of the rest - but never the strategy that
          failed last while another automatic candidate remains, so a failed fix is not retried
          straight away;
        * then the other fresh candidates and those that failed once here, by score, so a right
          fix that failed by chance comes back before weak alternatives;
        * then manual intervention as the fallback, and last the strategies that failed more
          than once here.

        Manual intervention ends automatic recovery, so unless it has itself resolved this very
        signature (or several automatic strategies keep failing on it in this step) it is
        ordered as if its score were ``MANUAL_ORDER`` of what it is, and takes a place among the
        fresh candidates only when that is still at least ``HOPELESS``.
        """
        _, _, details = self._score(failure)
        failures: dict[str, int] = {}
        for name in exclude:
            failures[name] = failures.get(name, 0) + 1

        def order(d: CandidateDetail) -> float:
            stuck = "keep failing" in d.prior_source
            if d.strategy == MANUAL and d.signature_recovered <= 0 and not stuck:
                return d.score * MANUAL_ORDER
            return d.score

        # a strategy with a record on this very signature leaves the others only the chance
        # that it is not the fix this time
        proven = sorted(
            ((d.score, d.strategy) for d in details if d.signature_recovered > 0), reverse=True
        )

        def chance(d: CandidateDetail) -> float:
            rival = next((sc for sc, name in proven if name != d.strategy), 0.0)
            return order(d) * (1.0 - rival)

        last = list(exclude)[-1:] if isinstance(exclude, Sequence) else list(exclude)
        pool, fallback, rest = [], [], []
        for d in sorted(details, key=lambda d: -order(d)):
            n = failures.get(d.strategy, 0)
            if n == 0 and d.strategy == MANUAL and order(d) < HOPELESS:
                fallback.append(d)
            elif n == 0 or (n == 1 and d.strategy != MANUAL):
                pool.append(d)
            else:
                rest.append(d)
        rest.sort(key=lambda d: (failures.get(d.strategy, 0), -d.score))
        # first: the best fresh candidate with a real chance; failing that the best candidate,
        # but never the strategy that just failed while another automatic one remains
        first = next(
            (i for i, d in enumerate(pool) if d.strategy not in failures and chance(d) >= HOPELESS),
            None,
        )
        if first is None:
            first = next((i for i, d in enumerate(pool) if d.strategy not in last), None)
        if first:
            pool.insert(0, pool.pop(first))
        out = []
        for d in (*pool, *fallback, *rest):
            why = d.why
            if d.strategy in failures:
                times = "once" if failures[d.strategy] == 1 else f"{failures[d.strategy]} times"
                why = f"failed {times} for this error in this deployment, demoted; {why}"
            out.append(Candidate(d.strategy, d.score, why, d.decided_by))
        if not failures:
            out = self._maybe_explore(failure, pool, out)
        return out

    def _maybe_explore(
        self, failure: Failure, kept: list[CandidateDetail], out: list[Candidate]
    ) -> list[Candidate]:
        """Now and then try a promising, untried, not-high-risk alternative first."""
        if not self.explore or len(kept) < 3 or failure.signature in self._explored:
            return out
        top = kept[0]
        if top.neighbour_recovered + top.neighbour_failed >= 3:
            return out
        if self._rng.random() >= self.explore:
            return out
        for i, d in enumerate(kept[1:], 1):
            if d.strategy == MANUAL or d.risk == Risk.HIGH.value:
                continue
            if d.neighbour_recovered + d.neighbour_failed > 0 or d.score < 0.5 * top.score:
                continue
            self._explored.add(failure.signature)
            chosen = out[i]
            why = f"exploring an untried alternative (low/medium risk); {chosen.why}"
            return [Candidate(chosen.strategy, chosen.score, why, "explore")] + [
                c for j, c in enumerate(out) if j != i
            ]
        return out

    def explain(self, text: str, step: str = "") -> Explanation:
        """Everything behind a ranking, structured (no exploration)."""
        a = self.analyze(text)
        result = Result(command="", host="", exit_code=1, stdout="", stderr=text, duration=0.0)
        failure = Failure(step, result, a.error_class, a.signature, dict(a.details))
        a, neighbours, details = self._score(failure)
        return Explanation(
            signature=a.signature,
            error_class=a.error_class,
            class_scores=[(c, round(s, 4)) for c, s in a.class_scores],
            rule_hits=a.hits,
            details=dict(a.details),
            neighbours=neighbours,
            candidates=details,
        )

    def failure_of(self, text: str, step: str = "") -> Failure:
        """A Failure for raw text (CLI, simulator)."""
        result = Result(command="", host="", exit_code=1, stdout="", stderr=text, duration=0.0)
        return self.detect(step, result)
