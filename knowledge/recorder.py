"""The knowledge base as an event sink: deployments, step runs and recovery outcomes, recorded
as they happen."""

from __future__ import annotations

from collections.abc import Mapping

from aideploy.core.events import (
    AttemptDecided,
    AttemptPending,
    DeploymentEnded,
    DeploymentStarted,
    Event,
    StepRan,
)
from aideploy.core.recovery import Outcome
from aideploy.knowledge.store import KnowledgeBase

#: how a final state is named in the knowledge base (its reports count "succeeded")
KB_STATUS = {
    "completed": "succeeded",
    "failed": "failed",
    "paused": "paused",
    "abandoned": "abandoned",
    "running": "running",
    "pending": "pending",
}

#: lines of a step's output kept with its run
OUTPUT_TAIL_LINES = 40


class KnowledgeRecorder:
    """Writes what a deployment does into ``kb``; events it does not store are ignored."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    def publish(self, event: Event) -> None:
        match event:
            case DeploymentStarted():
                self.kb.start_deployment(event.deployment_id, event.profile, event.host, event.plan)
            case DeploymentEnded():
                self.kb.finish_deployment(
                    event.deployment_id, KB_STATUS.get(event.status, event.status)
                )
                if event.status == "completed":
                    # nothing is left to decide an attempt whose decision was never recorded
                    # (its write failed): it stays in the knowledge base as unknown
                    self.kb.settle_pending(event.deployment_id)
            case StepRan():
                result = event.result
                self.kb.record_step_run(
                    event.deployment_id,
                    event.step,
                    event.attempt,
                    result.exit_code,
                    result.duration,
                    result.tail(OUTPUT_TAIL_LINES),
                    result.timed_out,
                )
            case AttemptPending():
                self._attempt(event, Outcome.PENDING, 0.0)
            case AttemptDecided():
                self._attempt(event, event.outcome, event.duration)
            case _:
                pass

    def _attempt(
        self, event: AttemptPending | AttemptDecided, outcome: Outcome, duration: float
    ) -> None:
        failure = event.failure
        self.kb.record_attempt(
            event.deployment_id,
            failure.signature,
            failure.error_class,
            event.strategy,
            failure.step,
            outcome,
            duration,
            event.decided_by,
            _without_step(event.context),
            attempt_id=event.attempt_id,
        )


def _without_step(context: Mapping[str, str]) -> dict[str, str]:
    """An attempt's context as stored: the step has a column of its own."""
    return {k: v for k, v in context.items() if k != "step"}
