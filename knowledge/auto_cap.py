"""The ``--auto`` cap on imported evidence.

With no person to approve a choice, a medium- or high-risk strategy may not be put forward by
what another knowledge base says, even one that was trusted: its score is capped at what the
local evidence alone gives it (the rules' prior and the outcomes recorded here). :class:`AutoCap`
is an advisor over two rankers, one over every outcome the ranking uses and one over the local
outcomes only; low-risk strategies keep their full score. The cap works on the rankers'
results, so it holds whatever the scoring inside them does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from aideploy.core.recovery import Candidate, Failure, Outcome, Risk
from aideploy.core.result import Result
from aideploy.engine.recovery import RecoveryAdvisor

#: the risks whose score imported evidence may not raise under --auto
CAPPED = frozenset({Risk.MEDIUM, Risk.HIGH})


def cap(
    ranked: Sequence[Candidate], local: dict[str, float], risk: Callable[[str], Risk]
) -> list[Candidate]:
    """``ranked`` with each medium- or high-risk candidate's score at most its score on local
    evidence (0 when local evidence does not propose it); a capped candidate moves down past
    those now scored above it, every other keeps its place."""
    out = list(ranked)
    capped: list[Candidate] = []
    for i, c in enumerate(out):
        level = risk(c.strategy)
        ceiling = local.get(c.strategy, 0.0)
        if level in CAPPED and c.score > ceiling:
            out[i] = replace(
                c,
                score=ceiling,
                why=f"{c.why}; --auto: capped at {ceiling:.3f}, what local evidence supports "
                f"(imported evidence may not raise a {level.value}-risk strategy)",
            )
            capped.append(out[i])
    for c in reversed(capped):  # from the bottom up: what is below a candidate is settled
        i = out.index(c)
        out.pop(i)
        j = i
        while j < len(out) and out[j].score > c.score:
            j += 1
        out.insert(j, c)
    return out


class AutoCap:
    """A RecoveryAdvisor: ``full``'s candidates, capped by ``local``'s (see :func:`cap`)."""

    def __init__(
        self, full: RecoveryAdvisor, local: RecoveryAdvisor, risk: Callable[[str], Risk]
    ) -> None:
        self.full = full
        self.local = local
        self.risk = risk

    def detect(self, step: str, result: Result) -> Failure:
        return self.full.detect(step, result)

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        ranked = self.full.candidates(failure, exclude=exclude)
        local = {c.strategy: c.score for c in self.local.candidates(failure, exclude=exclude)}
        return cap(ranked, local, self.risk)

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
        for advisor in (self.full, self.local):  # an outcome here is local evidence for both
            advisor.record(
                failure,
                strategy,
                outcome,
                duration=duration,
                decided_by=decided_by,
                deployment_id=deployment_id,
            )
