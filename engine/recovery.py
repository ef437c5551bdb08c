"""The recovery protocols the executor talks to (values live in :mod:`aideploy.core.recovery`).

A failed step's :class:`~aideploy.core.result.Result` is turned into a :class:`Failure`
(error class + signature + details extracted from the text) by an advisor, which then proposes
ranked :class:`Candidate` strategies and learns from each recorded outcome. The rule table in
:mod:`aideploy.knowledge.rules` is the cold-start advisor; the learning ranker implements the same
protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aideploy.core.events import AttemptDecided, Event
from aideploy.core.recovery import Candidate, Failure, Outcome
from aideploy.core.strategies import StrategySpec

if TYPE_CHECKING:
    from aideploy.core.clock import Clock
    from aideploy.core.result import Result
    from aideploy.engine.runner import Runner


class RecoveryAdvisor(Protocol):
    def detect(self, step: str, result: Result) -> Failure: ...

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]: ...

    def record(
        self,
        failure: Failure,
        strategy: str,
        outcome: Outcome,
        *,
        duration: float,
        decided_by: str,
        deployment_id: str | None = None,
    ) -> None: ...


@dataclass
class StrategyContext:
    """What a strategy may use: the target's runner, the failure, settings and a way to ask."""

    runner: Runner
    failure: Failure
    clock: Clock
    approve: Callable[[str], bool]
    settings: Mapping[str, object] = field(default_factory=dict)
    #: processes/ports this deployment started (free_port may stop those without asking)
    owned_pids: Collection[int] = ()


class Strategy(Protocol):
    """What the executor runs: what the strategy is (its spec: name, risk, description...) and
    the work. The one implementation is :class:`aideploy.steps.strategies.Recovery`."""

    @property
    def spec(self) -> StrategySpec: ...

    def apply(self, ctx: StrategyContext) -> bool:
        """Do the recovery work on the target; True if it did something worth a retry."""
        ...


class LazyAdvisor:
    """Builds the real advisor on first use: a deployment that meets no failure never pays for
    loading the ranker (its model and the knowledge base's history)."""

    def __init__(self, factory: Callable[[], RecoveryAdvisor]) -> None:
        self._factory = factory
        self._advisor: RecoveryAdvisor | None = None

    @property
    def built(self) -> bool:
        return self._advisor is not None

    def _get(self) -> RecoveryAdvisor:
        if self._advisor is None:
            self._advisor = self._factory()
        return self._advisor

    def detect(self, step: str, result: Result) -> Failure:
        return self._get().detect(step, result)

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        return self._get().candidates(failure, exclude=exclude)

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
        self._get().record(
            failure,
            strategy,
            outcome,
            duration=duration,
            decided_by=decided_by,
            deployment_id=deployment_id,
        )


class AdvisorLearner:
    """The advisor as an event sink: it learns from every recovery outcome as it is decided."""

    def __init__(self, advisor: RecoveryAdvisor) -> None:
        self.advisor = advisor

    def publish(self, event: Event) -> None:
        if isinstance(event, AttemptDecided):
            self.advisor.record(
                event.failure,
                event.strategy,
                event.outcome,
                duration=event.duration,
                decided_by=event.decided_by,
                deployment_id=event.deployment_id,
            )
