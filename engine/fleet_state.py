"""A fleet run's state: which hosts one run deploys to, and how each one ended.

One JSON file per run (``<home>/runs/<run id>.json``) links the run to each host's own
deployment state (``engine.state``, kept as for a single deployment): the run holds per host its
target, its deployment id, its result and a short summary. Saved atomically under a lock, since
the hosts of a run finish in parallel.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from aideploy.core import paths
from aideploy.core.errors import StateError
from aideploy.core.statefile import read_state, write_state
from aideploy.engine.state import now_iso

RUN_PREFIX = "run-"
_ID_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyz-")


class HostResult(StrEnum):
    PENDING = "pending"  # not started (yet, or the rollout stopped before it)
    RUNNING = "running"
    OK = "ok"  # deployed, and its health check passed
    FAILED = "failed"  # the deployment failed (or could not start)
    UNHEALTHY = "unhealthy"  # deployed, but its health check failed
    PAUSED = "paused"  # waiting for a person


#: results that count against ``--max-fail``
FAILED_RESULTS = frozenset({HostResult.FAILED, HostResult.UNHEALTHY, HostResult.PAUSED})


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"  # every host ok
    FAILED = "failed"  # every host tried, some failed
    STOPPED = "stopped"  # the rollout stopped (health gate, --max-fail) before every host


@dataclass
class HostRun:
    name: str
    target: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    deployment_id: str | None = None
    result: HostResult = HostResult.PENDING
    batch: int = 0
    steps_done: int = 0
    steps_total: int = 0
    duration: float = 0.0
    recoveries: list[str] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)
    reason: str | None = None
    exit_code: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostRun:
        return cls(**{**data, "result": HostResult(data["result"])})


@dataclass
class RunState:
    run_id: str
    plan: str
    status: RunStatus
    hosts: list[HostRun]
    options: dict[str, Any] = field(default_factory=dict)
    start_time: str = field(default_factory=now_iso)
    end_time: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def host(self, name: str) -> HostRun:
        for host in self.hosts:
            if host.name == name:
                return host
        raise StateError(f"run {self.run_id} has no host {name!r}")

    @property
    def path(self) -> Path:
        return run_path(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_lock", None)
        return data

    def save(self) -> None:
        with self._lock:
            write_state(self.path, self, "runs")

    @classmethod
    def load(cls, run_id: str) -> RunState:
        path = run_path(run_id)
        data = read_state(
            path,
            missing=f"no run {run_id!r} (run directory: {path.parent})",
            hint="aideploy list shows known deployments and runs",
            kind="run state",
        )
        try:
            hosts = [HostRun.from_dict(h) for h in data.pop("hosts")]
            data["status"] = RunStatus(data["status"])
            return cls(hosts=hosts, **data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: unreadable run state: {exc}") from None


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{RUN_PREFIX}{stamp}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    return text.startswith(RUN_PREFIX)


def run_path(run_id: str) -> Path:
    if not run_id or not set(run_id) <= _ID_CHARS:
        raise StateError(f"malformed run id {run_id!r}")
    return paths.home() / "runs" / f"{run_id}.json"


def list_runs() -> list[RunState]:
    folder = paths.home() / "runs"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            found.append(RunState.load(path.stem))
        except StateError:
            continue
    return sorted(found, key=lambda r: r.start_time + r.run_id, reverse=True)
