"""The knowledge base as an event sink: deployments, step runs and recovery outcomes, recorded
as they happen."""

from __future__ import annotations

from aideploy.core.events import (
    AttemptDecided,
    DeploymentEnded,
    DeploymentStarted,
    Event,
    StepRan,
)
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
            case AttemptDecided():
                failure = event.failure
                context = {k: v for k, v in event.context.items() if k != "step"}
                self.kb.record_attempt(
                    event.deployment_id,
                    failure.signature,
                    failure.error_class,
                    event.strategy,
                    failure.step,
                    event.outcome.value,
                    event.duration,
                    event.decided_by,
                    context,  # the step has a column of its own
                )
            case _:
                pass
