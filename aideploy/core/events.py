"""What happens during a deployment, as typed values published to sinks.

The executor publishes each event once, to an :class:`EventBus`; every consumer is a sink: the
advisor learning from outcomes, the knowledge base recording them, the console's live progress,
the deployment state kept for metrics. No sink reads another sink's output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aideploy.core.recovery import Failure, Outcome
from aideploy.core.result import Result

log = logging.getLogger("aideploy.events")


@dataclass(frozen=True)
class DeploymentStarted:
    deployment_id: str
    plan: str
    host: str
    profile: str | None = None


@dataclass(frozen=True)
class DeploymentEnded:
    deployment_id: str
    #: the state's status value: completed, failed or paused
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class StepStarted:
    deployment_id: str
    step: str
    index: int  # 1-based
    total: int
    description: str = ""


@dataclass(frozen=True)
class StepSkipped:
    """The step's check said it was already done."""

    deployment_id: str
    step: str


@dataclass(frozen=True)
class StepDone:
    deployment_id: str
    step: str
    attempts: int


@dataclass(frozen=True)
class StepRan:
    """One run of a step's work, successful or not."""

    deployment_id: str
    step: str
    attempt: int  # counted over the deployment's life, resumes included
    result: Result


@dataclass(frozen=True)
class ErrorDetected:
    deployment_id: str
    failure: Failure


@dataclass(frozen=True)
class RecoveryStarted:
    deployment_id: str
    step: str
    strategy: str
    why: str


@dataclass(frozen=True)
class AttemptPending:
    """A recovery strategy is about to act: its attempt is recorded ``pending`` first, so that
    an interruption (kill -9) never loses it; :class:`AttemptDecided` with the same
    ``attempt_id`` settles it."""

    deployment_id: str
    attempt_id: str
    failure: Failure
    strategy: str
    decided_by: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptDecided:
    """A recovery attempt's outcome: recovered or failed after the re-run, skipped, or unknown
    (interrupted while the strategy acted)."""

    deployment_id: str
    failure: Failure
    strategy: str
    outcome: Outcome
    duration: float
    decided_by: str
    #: what the outcome is learnt under besides the step (host, plan, the tool detection named)
    context: Mapping[str, str] = field(default_factory=dict)
    #: the id of the pending attempt this decides (None: an attempt recorded once, e.g. skipped)
    attempt_id: str | None = None


Event = (
    DeploymentStarted
    | DeploymentEnded
    | StepStarted
    | StepSkipped
    | StepDone
    | StepRan
    | ErrorDetected
    | RecoveryStarted
    | AttemptPending
    | AttemptDecided
)


class EventSink(Protocol):
    def publish(self, event: Event) -> None: ...


class EventBus:
    """Publishes each event to every sink in order; a failing sink is logged and never stops a
    deployment or the sinks after it."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks: list[EventSink] = list(sinks)

    def publish(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.publish(event)
            except Exception as exc:
                log.error(
                    "%s could not take %s: %s", type(sink).__name__, type(event).__name__, exc
                )
