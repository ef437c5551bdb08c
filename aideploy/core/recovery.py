"""Values of recovery: what detection made of a failure, a proposed strategy, risks, outcomes.

They are what the executor, the knowledge base and the ranker pass between them; the protocols
the executor talks to (advisor, strategy) live on the engine floor in
:mod:`aideploy.engine.recovery`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aideploy.core.result import Result


class Outcome(StrEnum):
    RECOVERED = "recovered"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: recorded before the strategy is applied; replaced by the decided outcome afterwards
    PENDING = "pending"
    #: the strategy was interrupted while it acted (kill -9): what it changed is not known
    UNKNOWN = "unknown"


class Risk(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class Failure:
    """What detection made of a failed command."""

    step: str
    result: Result
    error_class: str
    signature: str
    details: Mapping[str, str] = field(default_factory=dict)


def outcome_context(failure: Failure) -> dict[str, str]:
    """What an outcome is learnt and predicted under: the failure's step, and the tool that
    printed the error when detection named one (a rule's ``tool`` group)."""
    context = {"step": failure.step}
    if failure.details.get("tool"):
        context["tool"] = failure.details["tool"]
    return context


@dataclass(frozen=True)
class Candidate:
    """A strategy proposed for a failure, with its score and why."""

    strategy: str
    score: float
    why: str
    decided_by: str = "rule"
