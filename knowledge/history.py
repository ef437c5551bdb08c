"""What the ranker reads from a knowledge base: past recovery outcomes, as plain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PastOutcome:
    """One recorded recovery attempt: on this signature, this strategy gave this outcome."""

    signature: str
    error_class: str
    strategy: str
    outcome: str  # "recovered" | "failed" | "skipped"
    weight: float = 1.0  # imported outcomes weigh less than local ones
    context: Mapping[str, str] = field(default_factory=dict)
    at: datetime | None = None
    deployment_id: str | None = None


class History(Protocol):
    """A source of past outcomes (the knowledge base, or a list in tests and simulations)."""

    def past_outcomes(self) -> Iterable[PastOutcome]: ...


class ListHistory:
    """An in-memory history: the simulator and unit tests use it."""

    def __init__(self, outcomes: Iterable[PastOutcome] = ()) -> None:
        self.outcomes = list(outcomes)

    def past_outcomes(self) -> Iterable[PastOutcome]:
        return list(self.outcomes)

    def add(self, outcome: PastOutcome) -> None:
        self.outcomes.append(outcome)
