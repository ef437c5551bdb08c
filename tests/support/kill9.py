"""kill -9 at random points of a deployment, then resume it: is it resumable, and did the
knowledge base keep every recovery attempt's outcome?

One run deploys a small local plan (a step that fails once, a trusted knowledge-base strategy
that fixes it, steps around it) with the real CLI, kills the CLI's process group with SIGKILL at
a chosen moment, resumes the deployment with ``aideploy resume`` and then reads the state file
and the knowledge base:

- *resumable*: the resume exits 0 with the deployment completed;
- *lost outcomes*: recovery attempts the state says were started, less the attempts the knowledge
  base holds decided (recovered, failed or unknown) for the deployment, plus any still pending;
- *integrity*: SQLite's ``PRAGMA integrity_check`` on the knowledge base.

Kill moments are stratified over the calibrated span of an uninterrupted deployment (run ``i`` of
``n`` is killed at a random moment of the ``i``-th ``n``-th of it), so a few runs cover the whole
deployment. Used by ``tests/test_kill9.py`` (a few runs) and ``benchmarks/kill9_soak.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aideploy.knowledge.store import KnowledgeBase

PLAN = """
name = "kill9"

[[steps]]
name = "first"
commands = ['echo first >> "$RUNLOG"']

[[steps]]
name = "needs_fix"
description = "fails until the recovery creates the marker"
check = 'test -e "$DONE"'
commands = ['echo needs_fix >> "$RUNLOG"; test -e "$MARKER" || { echo "the marker is missing" >&2; exit 1; }; touch "$DONE"']

[[steps]]
name = "last"
commands = ['echo last >> "$RUNLOG"']
"""

#: the strategy acts for a moment, so that kills land inside it too
FIX = 'sleep 0.2; touch "$MARKER"'
CONFIG = {"deployment": {"retry_delay": 0.2, "max_retries": 3}}
STARTUP_DEADLINE = 60.0


@dataclass(frozen=True)
class KillRun:
    """What one killed-then-resumed deployment left behind."""

    killed_at: float  # seconds after the deployment's state appeared
    killed: bool  # False: it had finished before the kill
    resumable: bool
    started: int  # recovery attempts the state says were started
    decided: int  # attempts the knowledge base holds decided (recovered, failed, unknown)
    pending: int  # attempts the knowledge base still holds pending
    integrity: str
    detail: str = ""

    @property
    def lost(self) -> int:
        return max(0, self.started - self.decided) + self.pending


@dataclass(frozen=True)
class SoakReport:
    runs: tuple[KillRun, ...]

    @property
    def resumable(self) -> int:
        return sum(r.resumable for r in self.runs)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def integrity_ok(self) -> int:
        return sum(r.integrity == "ok" for r in self.runs)

    @property
    def killed(self) -> int:
        return sum(r.killed for r in self.runs)

    def summary(self) -> str:
        n = len(self.runs)
        return (
            f"runs {n}, killed mid-deployment {self.killed}, resumable {self.resumable}/{n}, "
            f"lost outcomes {self.lost}, KB integrity ok {self.integrity_ok}/{n}, "
            f"pending left {sum(r.pending for r in self.runs)}"
        )


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "AIDEPLOY_HOME": str(work / "home"), "NO_COLOR": "1"}


def _prepare(work: Path) -> list[str]:
    work.mkdir(parents=True)
    (work / "plan.toml").write_text(PLAN)
    (work / "config.json").write_text(json.dumps(CONFIG))
    with KnowledgeBase.open(work / "kb.sqlite") as kb:
        kb.add_strategy("make_marker", "create the marker", "low", commands=[FIX], trusted=True)
        kb.add_pattern("marker_missing", r"the marker is missing", "unknown", "make_marker")
    sets = {"RUNLOG": work / "runs.log", "MARKER": work / "marker", "DONE": work / "done"}
    args = ["--config", str(work / "config.json"), "deploy", "--local", "--auto"]
    args += ["--plan", str(work / "plan.toml"), "--kb", str(work / "kb.sqlite")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def _cli(work: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aideploy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=work,
        env=_env(work),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _state_file(work: Path, proc: subprocess.Popen[str]) -> Path | None:
    """Wait for the deployment's state file (the deployment has started); None if the CLI ended
    first."""
    folder = work / "home" / "deployments"
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        found = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if found:
            return found[0]
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    raise TimeoutError(f"no deployment state under {folder} after {STARTUP_DEADLINE:.0f}s")


def calibrate(root: Path) -> float:
    """Seconds from the state file's appearance to the end of an uninterrupted deployment."""
    work = root / "calibration"
    proc = _cli(work, *_prepare(work))
    if _state_file(work, proc) is None:
        raise RuntimeError(f"calibration deployment ended early: {proc.communicate()[0]}")
    started = time.monotonic()
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"calibration deployment failed ({proc.returncode}): {out}")
    return time.monotonic() - started


def _kb_counts(kb: Path, deployment_id: str) -> tuple[int, int, str]:
    conn = sqlite3.connect(kb)
    try:
        rows = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM recovery_attempts WHERE deployment_id = ? "
                "GROUP BY outcome",
                (deployment_id,),
            ).fetchall()
        )
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
    decided = sum(rows.get(o, 0) for o in ("recovered", "failed", "unknown"))
    return decided, rows.get("pending", 0), integrity


def _read(state_file: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):  # pragma: no cover - the state is written atomically
        return {}
    return data if isinstance(data, dict) else {}


def _wait_for(
    state_file: Path, proc: subprocess.Popen[str], when: Callable[[dict[str, Any]], bool]
) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while proc.poll() is None and time.monotonic() < deadline:
        if when(_read(state_file)):
            return
        time.sleep(0.002)
    raise AssertionError(f"the deployment never reached the kill point: {_read(state_file)}")


def cli(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one aideploy command in a run's directory and environment, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "aideploy", *args],
        capture_output=True,
        text=True,
        cwd=work,
        env=_env(work),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def _deploy_and_kill(
    work: Path, delay: float, when: Callable[[dict[str, Any]], bool] | None
) -> tuple[Path | None, bool]:
    """Deploy, kill -9 ``delay`` seconds after the state appears (or as soon as the saved state
    satisfies ``when``); the state file (None: the deployment never started) and whether the
    kill came before the deployment ended."""
    proc = _cli(work, *_prepare(work))
    state_file = _state_file(work, proc)
    was_killed = False
    if state_file is not None:
        if when is not None:
            _wait_for(state_file, proc, when)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            was_killed = True
    proc.communicate(timeout=120)
    return state_file, was_killed


def killed(work: Path, when: Callable[[dict[str, Any]], bool]) -> str:
    """Deploy and kill -9 as soon as the saved state satisfies ``when``; the deployment id."""
    state_file, was_killed = _deploy_and_kill(work, 0.0, when)
    assert state_file is not None, "the deployment never started"
    assert was_killed, "the deployment ended before the kill point"
    return state_file.stem


def one_run(
    work: Path, delay: float, *, when: Callable[[dict[str, Any]], bool] | None = None
) -> KillRun:
    """Deploy, kill -9 ``delay`` seconds after the state appears (or as soon as the saved state
    satisfies ``when``), resume, inspect."""
    state_file, was_killed = _deploy_and_kill(work, delay, when)
    if state_file is None:
        return KillRun(delay, False, False, 0, 0, 0, "-", "the deployment never started")
    deployment_id = state_file.stem
    detail = ""
    state = json.loads(state_file.read_text())
    resumable = state["status"] == "completed"
    if not resumable:
        resumed = cli(work, "resume", deployment_id)
        state = json.loads(state_file.read_text())
        resumable = resumed.returncode == 0 and state["status"] == "completed"
        if not resumable:
            detail = f"resume exit {resumed.returncode}: {resumed.stdout}{resumed.stderr}"
    started = sum(len(step["recoveries"]) for step in state["steps"])
    decided, pending, integrity = _kb_counts(work / "kb.sqlite", deployment_id)
    return KillRun(delay, was_killed, resumable, started, decided, pending, integrity, detail)


def outcomes(work: Path) -> list[str]:
    """The recovery outcomes the run's knowledge base holds, in order."""
    conn = sqlite3.connect(work / "kb.sqlite")
    try:
        return [o for (o,) in conn.execute("SELECT outcome FROM recovery_attempts ORDER BY id")]
    finally:
        conn.close()


def pending_phase(phase: str) -> Callable[[dict[str, Any]], bool]:
    """A kill point: the state shows a recovery attempt pending in ``phase``."""

    def reached(state: dict[str, Any]) -> bool:
        return any(
            (step.get("pending") or {}).get("phase") == phase for step in state.get("steps", [])
        )

    return reached


def soak(root: Path, runs: int, *, seed: int = 0) -> SoakReport:
    """``runs`` killed-and-resumed deployments under ``root``, kill moments stratified."""
    rng = random.Random(seed)
    span = calibrate(root)
    results = []
    for i in range(runs):
        delay = 0.85 * span * (i + rng.random()) / runs  # the tail is process exit
        results.append(one_run(root / f"run{i:04d}", delay))
    return SoakReport(tuple(results))
