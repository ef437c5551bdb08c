"""Deployment state: saved atomically after every step so a deployment can be resumed.

One JSON file per deployment (``<home>/deployments/<id>.json``); several deployments are kept.
The state holds no secret: server info is host, port, user and connector kind only.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aideploy.core import paths
from aideploy.core.errors import StateError
from aideploy.core.process import pid_alive
from aideploy.core.recovery import Failure
from aideploy.core.result import Result
from aideploy.core.statefile import read_state, write_state

_ID_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyz-")


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"  # waiting for a person (manual intervention); resumable
    ABANDONED = "abandoned"  # given up by a person (aideploy abandon); never resumed


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"  # its check said it was already done
    FAILED = "failed"  # the deployment ended FAILED on this step (or was interrupted in it)
    PAUSED = "paused"  # the deployment is waiting for a person on this step
    RECOVERING = "recovering"  # a recovery strategy is acting on the step (see PendingAttempt)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_deployment_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Incident:
    """One entry of a step's history: an error detected (``error_class``) or a recovery's
    outcome (``strategy`` and ``outcome``: recovered, failed or skipped)."""

    kind: str  # "error" | "outcome"
    error_class: str | None = None
    strategy: str | None = None
    outcome: str | None = None


class AttemptPhase(StrEnum):
    APPLYING = "applying"  # the strategy is acting
    APPLIED = "applied"  # it acted; the step's re-run (or check) will say whether it worked


@dataclass(frozen=True)
class PendingAttempt:
    """A recovery attempt whose outcome is not decided yet, saved with the step before the
    strategy acts: a deployment interrupted meanwhile settles it when it is resumed."""

    attempt_id: str
    strategy: str
    error_class: str
    signature: str
    decided_by: str
    phase: AttemptPhase = AttemptPhase.APPLYING
    duration: float = 0.0  # how long the strategy took (once applied)
    context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingAttempt:
        return cls(**{**data, "phase": AttemptPhase(data.get("phase", "applying"))})

    def failure(self, step: str, host: str) -> Failure:
        """The failure the attempt was made on, as far as it was saved (its output is not)."""
        return Failure(
            step,
            Result("<interrupted>", host, None, "", "", 0.0),
            self.error_class,
            self.signature,
            {k: v for k, v in self.context.items() if k != "step"},
        )


@dataclass
class StepState:
    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    error_class: str | None = None
    recoveries: list[str] = field(default_factory=list)
    #: errors and recovery outcomes in the order they happened (what metrics count)
    history: list[Incident] = field(default_factory=list)
    #: the recovery attempt in progress, if any
    pending: PendingAttempt | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        history = [Incident(**entry) for entry in data.get("history", [])]
        pending = data.get("pending")
        return cls(
            **{
                **data,
                "status": StepStatus(data["status"]),
                "history": history,
                "pending": PendingAttempt.from_dict(pending) if pending else None,
            }
        )


@dataclass
class DeploymentState:
    """The guide's DeploymentState, plus what resume needs (plan, per-step status)."""

    deployment_id: str
    plan: str
    status: DeploymentStatus
    current_step: int
    total_steps: int
    server_info: dict[str, Any]
    profile: str | None = None
    error_count: int = 0
    warnings: list[str] = field(default_factory=list)
    start_time: str = field(default_factory=now_iso)
    end_time: str | None = None
    reason: str | None = None
    steps: list[StepState] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    owner: dict[str, Any] = field(default_factory=dict)

    # -- persistence -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return state_path(self.deployment_id)

    def save(self) -> None:
        write_state(self.path, self, "deployments")

    @classmethod
    def load(cls, deployment_id: str) -> DeploymentState:
        path = state_path(deployment_id)
        data = read_state(
            path,
            missing=f"no deployment {deployment_id!r} (state directory: {path.parent})",
            hint="aideploy list shows known deployments",
            kind="state",
        )
        try:
            steps = [StepState.from_dict(s) for s in data.pop("steps")]
            data["status"] = DeploymentStatus(data["status"])
            return cls(steps=steps, **data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: unreadable state: {exc}") from None

    # -- helpers ---------------------------------------------------------------------------

    def step(self, name: str) -> StepState:
        for step in self.steps:
            if step.name == name:
                return step
        raise StateError(f"deployment {self.deployment_id} has no step {name!r}")

    def first_unfinished(self) -> int:
        for index, step in enumerate(self.steps):
            if step.status not in (StepStatus.DONE, StepStatus.SKIPPED):
                return index
        return len(self.steps)

    def claim(self) -> None:
        """Mark this process as the one running the deployment."""
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}

    def owner_alive(self) -> bool:
        """True if another live process on this machine is running the deployment."""
        pid = self.owner.get("pid")
        if not pid or self.owner.get("host") != socket.gethostname() or pid == os.getpid():
            return False
        return pid_alive(int(pid))


def state_path(deployment_id: str) -> Path:
    if not deployment_id or not set(deployment_id) <= _ID_CHARS:
        raise StateError(f"malformed deployment id {deployment_id!r}")
    return paths.deployments_dir() / f"{deployment_id}.json"


def list_states() -> list[DeploymentState]:
    """Every saved deployment, newest first; unreadable files are skipped."""
    folder = paths.deployments_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            found.append(DeploymentState.load(path.stem))
        except StateError:
            continue
    return sorted(found, key=lambda s: s.start_time + s.deployment_id, reverse=True)
