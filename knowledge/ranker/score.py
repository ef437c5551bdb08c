"""Scoring: turning the evidence into each candidate's chance of being the fix.

Candidates are the strategies some source proposes: rule hits, the likely classes' defaults,
the catalogue, and whatever was tried on the class, on fuzzy neighbours or on this signature.
Each one's score is built level by level, each Beta-smoothed towards the one before it:

1. the *prior*: the strongest source that proposes it (:func:`propose_priors`);
2. the *class*: the share of the class's (signature, step) pairs it fixes now, in every step,
   then in this step (one vote per pair, so one error that recurs a lot does not speak for its
   class);
3. the *neighbours*: similarity-weighted outcomes on fuzzy neighbours, then the outcomes on this
   very signature in other steps;
4. the *model*: P(recovered) from the outcome model, weighted down as direct evidence grows
   (:func:`estimate`);
5. last, the outcomes on this signature in this step move probability between the candidates
   (:func:`one_fix_posterior`), and failures of the strategy that last recovered it here raise
   the chance that its fix has changed (:func:`allow_change`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aideploy.core.recovery import Failure, Risk, outcome_context
from aideploy.knowledge.classes import related_strategies, risk_of, strategies_for
from aideploy.knowledge.outcome_model import OutcomeModel
from aideploy.knowledge.ranker.detect import Analysis
from aideploy.knowledge.ranker.evidence import (
    FIX_FAILS,
    FUZZY_CUTOFF,
    NO_EVIDENCE,
    WRONG_WORKS,
    Evidence,
    EvidenceStore,
    FixRecord,
    Neighbour,
    SignatureEvidence,
    Votes,
    change_chance,
)

MANUAL = "manual_intervention"
# priors: a proposer's weight times the decay of the strategy's position in its list
POSITION_DECAY = (1.0, 0.55, 0.32, 0.2, 0.14, 0.1)
CLASS_CUTOFF = 0.12  # classes under this normalised score bring no default strategies
MAIN_CLASS_FLOOR = 0.5  # the failure's own class proposes its defaults as if it scored this much
CLASS_DEFAULT_SHARE = 0.9  # a class default's prior against a rule's of the same weight
LONG_TAIL_PRIOR = 0.08  # the catalogue's other strategies for the class, and retry_with_backoff
SEEN_PRIOR = 0.05  # a strategy only seen on the class, a neighbour or this signature
MANUAL_SCORE = 0.02
# pseudo-observations each level of evidence gives the level above it (rule/default prior ->
# class -> cause: class, step and detail -> neighbours -> this signature in other steps -> in
# this step)
CLASS_PRIOR_STRENGTH = 1.5
CAUSE_STRENGTH = 2.0
# how much one (signature, step) pair's vote counts at the class level (another cause of the
# same class, or the same cause in another step) and at the cause level (same class, step and
# detail): broader evidence is further from this failure
CLASS_DISTANCE = 0.2
CAUSE_DISTANCE = 0.8
OTHER_STEPS_STRENGTH = 1.5
# a fuzzy neighbour of the same cause is mostly the same error printed another way (the cutoff is
# calibrated on variants of the corpus' train texts: see docs/learning.md); its outcomes count
# NEIGHBOUR_WEIGHT of this signature's at similarity 100, NEIGHBOUR_WEIGHT_AT_CUTOFF at the cutoff
NEIGHBOUR_WEIGHT = 0.9
NEIGHBOUR_WEIGHT_AT_CUTOFF = 0.5
MODEL_WEIGHT = 0.1
# a cause met for the first time (no outcome on it, its neighbours or its cause in this step):
# the model, which generalizes across causes sharing a rule, a named detail, a tool or words,
# is most of what is known, so it weighs more
MODEL_WEIGHT_NEW_CAUSE = 0.4
STUCK_AFTER = 3  # automatic strategies failed here (none working) before manual is not held back
HISTORY_AFTER = 0.5  # weighted outcomes behind a score before it counts as decided by history
RISK_ORDER = {Risk.LOW.value: 0, Risk.MEDIUM.value: 1, Risk.HIGH.value: 2}


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
    level: str = "rule"  # the most specific level of evidence behind the score (see LEVELS)
    signature_recovered: float = 0.0  # recoveries on this very signature (any step), weighted
    failed_since_it_worked: float = 0.0  # its failures here since it last recovered this error
    # manual intervention while several automatic strategies keep failing on this signature in
    # this step: ordered by its own score, not held back
    stuck: bool = False


#: the levels of evidence, most specific first
LEVELS = ("signature", "other steps", "neighbour", "cause", "class", "model", "rule")


@dataclass(frozen=True, slots=True)
class LevelVotes:
    """The votes of the class and of this failure's cause (class, step and detail)."""

    on_class: Votes
    on_cause: Votes
    cause: str


@dataclass(frozen=True, slots=True)
class Prior:
    """A candidate's starting score, and the source that proposed it."""

    value: float
    source: str


@dataclass(frozen=True, slots=True)
class Estimate:
    """A candidate's score after every level of evidence but this step's outcomes."""

    strategy: str
    prior: Prior
    on_class: Evidence  # its tallies on the whole class
    class_votes: float  # its share of the class's (signature, step) pairs, discounted
    cause_votes: float  # its share of this cause's pairs
    neighbours: Evidence  # on fuzzy neighbours, similarity-weighted
    other_steps: Evidence  # on this signature in other steps
    model: float | None  # the outcome model's P(recovered), when it has one
    score: float


@dataclass(frozen=True)
class Scored:
    """A failure's candidates, best first (their ``why`` still empty), and what they rest on."""

    analysis: Analysis
    error_class: str  # the class the candidates were scored under
    neighbours: list[Neighbour]
    candidates: list[CandidateDetail]
    transfer: float = 1.0  # what an outcome in another step counted (see EvidenceStore.transfer)


# --- priors ----------------------------------------------------------------------------------


def likely_classes(failure: Failure, analysis: Analysis, scores: Mapping[str, float]) -> list[str]:
    """The failure's class first (the analysis' best if the analysis does not score it), then
    the next likely ones among the analysis' best three (at least ``CLASS_CUTOFF``); ``scores``
    are the analysis' class scores."""
    main = failure.error_class if failure.error_class in scores else analysis.error_class
    return [main] + [c for c, s in analysis.class_scores[:3] if c != main and s >= CLASS_CUTOFF]


def _decay(position: int) -> float:
    return POSITION_DECAY[min(position, len(POSITION_DECAY) - 1)]


def propose_priors(
    analysis: Analysis,
    scores: Mapping[str, float],
    classes: Sequence[str],
    on_class: Mapping[str, Evidence],
    on_neighbours: Mapping[str, Evidence],
    on_signature: SignatureEvidence,
) -> dict[str, Prior]:
    """Each candidate's prior from the strongest source that proposes it (the first of equals),
    in the order the candidates were first proposed."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}

    def propose(name: str, value: float, source: str) -> None:
        if value > values.get(name, -1.0):  # -1: below any real prior
            values[name] = value
            sources[name] = source

    main = classes[0]
    for h in analysis.hits:
        for pos, name in enumerate(h.strategies):
            propose(name, h.weight * _decay(pos), f"rule {h.rule!r} ({h.error_class})")
    for c in classes:
        cs = max(scores.get(c, 0.0), MAIN_CLASS_FLOOR if c == main else 0.0)
        for pos, name in enumerate(strategies_for(c)):
            propose(name, cs * _decay(pos) * CLASS_DEFAULT_SHARE, f"class {c} default #{pos + 1}")
    for name in (*related_strategies(main), "retry_with_backoff"):
        propose(name, LONG_TAIL_PRIOR, f"catalogue: applies to {main}")
    for name in on_class:
        propose(name, SEEN_PRIOR, f"seen on class {main}")
    for name in on_neighbours:
        propose(name, SEEN_PRIOR, "neighbour evidence")
    for name in (*on_signature.here, *on_signature.elsewhere):
        propose(name, SEEN_PRIOR, "tried on this signature before")
    propose(MANUAL, MANUAL_SCORE, "always available")
    return {name: Prior(value, sources[name]) for name, value in values.items()}


# --- evidence levels -------------------------------------------------------------------------


def neighbour_weight(similarity: float) -> float:
    """How much a fuzzy neighbour's outcome counts against one on this signature:
    ``NEIGHBOUR_WEIGHT`` at similarity 100, falling linearly to ``NEIGHBOUR_WEIGHT_AT_CUTOFF`` at
    ``FUZZY_CUTOFF`` (nothing below it)."""
    if similarity < FUZZY_CUTOFF:
        return 0.0
    share = (similarity - FUZZY_CUTOFF) / (100.0 - FUZZY_CUTOFF)
    return NEIGHBOUR_WEIGHT_AT_CUTOFF + (NEIGHBOUR_WEIGHT - NEIGHBOUR_WEIGHT_AT_CUTOFF) * share


def fuzzy_evidence(neighbours: Sequence[Neighbour]) -> dict[str, Evidence]:
    """The fuzzy neighbours' outcomes (not this signature's), similarity-weighted and summed."""
    acc: dict[str, list[float]] = {}
    for n in neighbours:
        if n.similarity >= 100.0:
            continue
        w = neighbour_weight(n.similarity)
        for name, ev in n.outcomes.items():
            sums = acc.setdefault(name, [0.0, 0.0])
            sums[0] += w * ev.recovered
            sums[1] += w * ev.failed
    return {name: Evidence(rec, fail) for name, (rec, fail) in acc.items()}


def scaled(ev: Evidence, share: float) -> Evidence:
    return ev if share == 1.0 else Evidence(share * ev.recovered, share * ev.failed)


def smoothed(hits: float, trials: float, towards: float, strength: float) -> float:
    """Beta-smoothed share of hits: ``strength`` pseudo-trials at the level above's estimate."""
    return (hits + strength * towards) / (trials + strength)


def estimate(
    name: str,
    prior: Prior,
    votes: LevelVotes,
    on_class: Evidence,
    on_neighbours: Evidence,
    other_steps: Evidence,
    model: float | None,
) -> Estimate:
    """Levels class to other steps, broadest first, each shrinking the more specific one towards
    the estimate so far: a (signature, step) pair of another cause counts ``CLASS_DISTANCE`` of
    a vote, one of this cause ``CAUSE_DISTANCE``, so a strategy proven on another cause of the
    class does not outrank a rule that fits this one's detail."""
    cv = CLASS_DISTANCE * votes.on_class.by_strategy.get(name, 0.0)
    post = smoothed(cv, CLASS_DISTANCE * votes.on_class.total, prior.value, CLASS_PRIOR_STRENGTH)
    dv = CAUSE_DISTANCE * votes.on_cause.by_strategy.get(name, 0.0)
    post = smoothed(dv, CAUSE_DISTANCE * votes.on_cause.total, post, CAUSE_STRENGTH)
    f, o = on_neighbours, other_steps  # the neighbours weigh in with this step's outcomes
    post = smoothed(o.recovered, o.total, post, OTHER_STEPS_STRENGTH)
    if model is not None:
        direct = f.recovered + f.failed + o.recovered + o.failed
        new = direct == 0.0 and votes.on_cause.total == 0.0
        lam = MODEL_WEIGHT_NEW_CAUSE if new else MODEL_WEIGHT / (1.0 + direct)
        post = (1.0 - lam) * post + lam * model
    return Estimate(name, prior, on_class, cv, dv, on_neighbours, other_steps, model, post)


# --- this step's outcomes: the one-fix model -------------------------------------------------


def one_fix_posterior(prior: Mapping[str, float], here: Mapping[str, Evidence]) -> dict[str, float]:
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
        ev = here.get(name, NO_EVIDENCE)
        rec, fail = ev.recovered, ev.failed  # weighted: an import of weight w counts w
        logs[name] = math.log(max(p / total, 1e-9)) + rec * up + fail * down
    top = max(logs.values())
    weights = {k: math.exp(v - top) for k, v in logs.items()}
    norm = sum(weights.values())
    return {k: w / norm for k, w in weights.items()}


def allow_change(
    posterior: Mapping[str, float], prior: Mapping[str, float], fix: FixRecord
) -> dict[str, float]:
    """Blend in the chance that the fix has changed since ``fix`` last recovered the error here.

    Its (weighted) failures since then are chance (``FIX_FAILS`` each) or a change
    (``CHANGE_HAZARD`` a priori, after which it fails like any wrong strategy); given a change,
    only those failures count against the prior, not the record from before it. Two failures
    since it last worked make a change about three times likelier than chance, so a fix that
    worked many times stops being tried first without waiting for its old successes to decay.
    When another strategy then recovers it, the evidence store discounts the older record the
    same way, so the new fix stays first.
    """
    c = change_chance(fix.failed) * fix.belief
    since = one_fix_posterior(prior, {fix.strategy: Evidence(0.0, fix.failed)})
    return {n: (1.0 - c) * v + c * since[n] for n, v in posterior.items()}


def final_scores(
    estimates: Sequence[Estimate], on_signature: SignatureEvidence
) -> dict[str, float]:
    """The most specific levels: the outcomes on this signature in this step and on its fuzzy
    neighbours of the same cause (similarity-weighted), and a possible change of fix."""
    scores = {e.strategy: e.score for e in estimates}
    observed = {
        e.strategy: Evidence(
            here.recovered + e.neighbours.recovered, here.failed + e.neighbours.failed
        )
        for e in estimates
        for here in (on_signature.here.get(e.strategy, NO_EVIDENCE),)
        if here.total or e.neighbours.total
    }
    if not observed:
        return scores
    posterior = one_fix_posterior(scores, observed)
    last = on_signature.last_fix
    if last is not None and last.failed > 0:
        posterior = allow_change(posterior, scores, last)
    return posterior


def is_stuck(here: Mapping[str, Evidence]) -> bool:
    """Several automatic strategies tried on this signature in this step, all mostly failing."""
    autos = [ev for name, ev in here.items() if name != MANUAL]
    return len(autos) >= STUCK_AFTER and all(2.0 * ev.recovered < ev.failed for ev in autos)


# --- the candidates --------------------------------------------------------------------------


def decided_by(direct: float, e: Estimate) -> str:
    """What the score mostly rests on: outcomes on this error or its neighbours (``direct``,
    weighted), the model, or the rules."""
    if direct >= HISTORY_AFTER:
        return "history"
    if e.on_class.total >= HISTORY_AFTER:
        return "history" if e.model is None else "model"
    return "rule"


def level_of(e: Estimate, here: Evidence) -> str:
    """The most specific level of evidence behind a candidate's score (see ``LEVELS``)."""
    if here.total > 0:
        return "signature"
    if e.other_steps.total > 0:
        return "other steps"
    if e.neighbours.total > 0:
        return "neighbour"
    if e.cause_votes > 0:
        return "cause"
    if e.class_votes > 0:
        return "class"
    if e.model is not None and e.on_class.total >= HISTORY_AFTER:
        return "model"
    return "rule"


def detail(
    e: Estimate, score: float, on_signature: SignatureEvidence, keep_failing: bool, step: str
) -> CandidateDetail:
    """A candidate's final score and what it rests on, rounded for display (``why`` empty).
    ``keep_failing``: :func:`is_stuck` holds on this signature in this step."""
    here = on_signature.here.get(e.strategy, NO_EVIDENCE)
    f, o = e.neighbours, e.other_steps
    # outcomes on the neighbours and on this signature in any step
    direct_recovered = f.recovered + o.recovered + here.recovered
    direct_failed = f.failed + o.failed + here.failed
    stuck = keep_failing and e.strategy == MANUAL
    last = on_signature.last_fix
    return CandidateDetail(
        strategy=e.strategy,
        score=round(score, 4),
        risk=risk_of(e.strategy).value,
        prior=round(e.prior.value, 4),
        prior_source=(
            f"automatic strategies keep failing on this signature in step {step}"
            if stuck
            else e.prior.source
        ),
        class_recovered=round(e.on_class.recovered, 3),
        class_failed=round(e.on_class.failed, 3),
        neighbour_recovered=round(direct_recovered, 3),
        neighbour_failed=round(direct_failed, 3),
        model_probability=None if e.model is None else round(e.model, 4),
        decided_by=decided_by(direct_recovered + direct_failed, e),
        why="",
        level=level_of(e, here),
        signature_recovered=round(o.recovered + here.recovered, 3),
        failed_since_it_worked=(
            last.failed if last is not None and last.strategy == e.strategy else 0.0
        ),
        stuck=stuck,
    )


def _rank_key(d: CandidateDetail) -> tuple[float, int, str]:
    return (-d.score, RISK_ORDER.get(d.risk, 3), d.strategy)


@dataclass(frozen=True, slots=True)
class Parts:
    """Which parts of the ranker take part (all of them but in ablation benchmarks): the fuzzy
    neighbours and the outcome model."""

    fuzzy: bool = True
    model: bool = True


ALL_PARTS = Parts()


def score_candidates(
    failure: Failure,
    analysis: Analysis,
    evidence: EvidenceStore,
    model: OutcomeModel,
    parts: Parts = ALL_PARTS,
) -> Scored:
    """Every candidate for a failure with its score, best first (lower risk first among
    equals)."""
    signature = failure.signature or analysis.signature
    step = failure.step
    class_scores = dict(analysis.class_scores)
    classes = likely_classes(failure, analysis, class_scores)
    main = classes[0]
    on_class = evidence.on_class(main)
    context = outcome_context(failure)
    cause = evidence.cause(signature, context)
    votes = LevelVotes(
        evidence.votes(main, leave_out=signature),
        evidence.votes(main, step, cause, leave_out=signature),
        cause,
    )
    neighbours = evidence.neighbours(signature, classes, step, cause) if parts.fuzzy else []
    on_neighbours = fuzzy_evidence(neighbours)
    on_signature = evidence.signature(signature, step)
    priors = propose_priors(analysis, class_scores, classes, on_class, on_neighbours, on_signature)
    transfer = evidence.transfer()  # what this signature's outcomes in other steps are worth
    model_p = model.predict(signature, main, list(priors), context, cause) if parts.model else {}
    estimates = [
        estimate(
            name,
            prior,
            votes,
            on_class.get(name, NO_EVIDENCE),
            on_neighbours.get(name, NO_EVIDENCE),
            scaled(on_signature.elsewhere.get(name, NO_EVIDENCE), transfer),
            model_p.get(name),
        )
        for name, prior in priors.items()
    ]
    scores = final_scores(estimates, on_signature)
    stuck = is_stuck(on_signature.here)
    details = [detail(e, scores[e.strategy], on_signature, stuck, step) for e in estimates]
    details.sort(key=_rank_key)
    return Scored(analysis, main, neighbours, details, transfer)
