"""Explanations: each candidate's readable ``why``, and everything behind a ranking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aideploy.knowledge.ranker.evidence import NO_EVIDENCE, Neighbour, change_chance
from aideploy.knowledge.ranker.score import MANUAL, MANUAL_SCORE, CandidateDetail, Scored
from aideploy.knowledge.rules import RuleHit

NEIGHBOURS_NAMED = 4  # neighbours with outcomes of a strategy quoted in its ``why``


@dataclass(frozen=True)
class Explanation:
    signature: str
    error_class: str
    class_scores: list[tuple[str, float]]
    rule_hits: list[RuleHit]
    details: Mapping[str, str]
    neighbours: list[Neighbour]
    candidates: list[CandidateDetail]
    # what an outcome on this signature in another step counts against one in this step: the
    # share of fixes seen to carry over between steps
    other_steps: float = 1.0


def why(d: CandidateDetail, neighbours: Sequence[Neighbour], error_class: str) -> str:
    """A candidate's score in words: its prior, class and neighbour evidence, a possible change
    of fix, the model's probability and its risk."""
    if d.strategy == MANUAL and d.prior <= MANUAL_SCORE and not d.neighbour_recovered:
        return "manual intervention: pause, explain, keep state for resume (the fallback)"
    parts = [f"{d.prior_source} gives prior {d.prior:.2f}"]
    if d.class_recovered or d.class_failed:
        parts.append(
            f"on class {error_class}: {d.class_recovered:.1f} recovered / "
            f"{d.class_failed:.1f} failed"
        )
    seen = []
    for n in neighbours:
        ev = n.outcomes.get(d.strategy, NO_EVIDENCE)
        if ev.recovered or ev.failed:
            label = "same signature" if n.similarity >= 100 else f"sim {n.similarity:.0f}"
            seen.append(f"{label}: {ev.recovered:.1f} recovered / {ev.failed:.1f} failed")
    if seen:
        parts.append("neighbours: " + "; ".join(seen[:NEIGHBOURS_NAMED]))
    if d.failed_since_it_worked > 0:
        parts.append(
            f"failed {d.failed_since_it_worked:.1f} here since it last recovered this "
            f"error: {change_chance(d.failed_since_it_worked):.0%} chance its fix changed"
        )
    if d.model_probability is not None:
        parts.append(f"model p(recovered)={d.model_probability:.2f}")
    parts.append(f"level {d.level}")
    parts.append(f"risk {d.risk}")
    return "; ".join(parts)


def described(scored: Scored) -> list[CandidateDetail]:
    """The scored candidates, each with its ``why``."""
    # a copy with one field changed, a little quicker than dataclasses.replace
    return [
        CandidateDetail(**{**vars(d), "why": why(d, scored.neighbours, scored.error_class)})
        for d in scored.candidates
    ]


def explanation(scored: Scored) -> Explanation:
    a = scored.analysis
    return Explanation(
        signature=a.signature,
        error_class=a.error_class,
        class_scores=[(c, round(s, 4)) for c, s in a.class_scores],
        rule_hits=a.hits,
        details=dict(a.details),
        neighbours=scored.neighbours,
        candidates=described(scored),
        other_steps=scored.transfer,
    )
