"""Live progress as the executor reports it: a callback taking an event name and its data.

:class:`ProgressSink` turns the typed events into those calls, so a console display (or any
other callback) needs to know nothing of the event types.
"""

from __future__ import annotations

from typing import Any, Protocol

from aideploy.core.events import (
    AttemptDecided,
    DeploymentEnded,
    ErrorDetected,
    Event,
    RecoveryStarted,
    StepDone,
    StepSkipped,
    StepStarted,
)

#: lines of a failed command's output shown with its error
ERROR_TAIL_LINES = 3


class Progress(Protocol):
    def __call__(self, event: str, **data: Any) -> None: ...


class ProgressSink:
    """Calls ``progress(name, **data)`` for the events a display shows."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def publish(self, event: Event) -> None:
        match event:
            case StepStarted():
                self.progress(
                    "step_start",
                    index=event.index,
                    total=event.total,
                    name=event.step,
                    description=event.description,
                )
            case StepSkipped():
                self.progress("step_skip", name=event.step)
            case StepDone():
                self.progress("step_done", name=event.step, attempts=event.attempts)
            case ErrorDetected():
                failure = event.failure
                self.progress(
                    "error",
                    name=failure.step,
                    error_class=failure.error_class,
                    tail=failure.result.tail(ERROR_TAIL_LINES),
                )
            case RecoveryStarted():
                self.progress("recovery", name=event.step, strategy=event.strategy, why=event.why)
            case AttemptDecided():
                self.progress("outcome", strategy=event.strategy, outcome=event.outcome.value)
            case DeploymentEnded():
                self.progress("deployment_end", status=event.status, reason=event.reason)
            case _:
                pass
