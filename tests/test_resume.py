"""A deployment killed with SIGKILL mid-step is resumed by `aideploy resume ID` and completes
without re-running the steps that had finished. The CLI runs as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.cli import run_cli

PLAN = """
name = "resumable"

[[steps]]
name = "one"
commands = ['echo one >> "$RUNLOG"']

[[steps]]
name = "two"
commands = ['echo two >> "$RUNLOG"']

[[steps]]
name = "three"
description = "killed here the first time"
commands = ['echo three >> "$RUNLOG"; if [ -e "$MARK" ]; then echo resumed; else touch "$MARK"; sleep 120; fi']

[[steps]]
name = "four"
commands = ['echo four >> "$RUNLOG"']
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AIDEPLOY_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}


def test_sigkill_mid_step_then_resume_completes(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    runlog, mark = tmp_path / "runs.log", tmp_path / "mark"
    kb = tmp_path / "kb.sqlite"
    args = [
        "deploy",
        "--local",
        "--plan",
        str(plan),
        "--kb",
        str(kb),
        "--set",
        f"RUNLOG={runlog}",
        "--set",
        f"MARK={mark}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aideploy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        start_new_session=True,
    )
    states = tmp_path / "home" / "deployments"
    deadline = time.monotonic() + 60
    state_file = None
    while time.monotonic() < deadline:
        if mark.exists():
            found = list(states.glob("*.json"))
            if found:
                state_file = found[0]
                data = json.loads(state_file.read_text())
                if data["current_step"] == 3:
                    break
        time.sleep(0.05)
    assert state_file is not None, proc.stdout.read() if proc.stdout else ""
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the step's shell, mid-step
    proc.wait(timeout=10)

    data = json.loads(state_file.read_text())  # the state is readable after kill -9
    assert data["status"] == "running"
    assert [s["status"] for s in data["steps"]] == ["done", "done", "running", "pending"]
    dep_id = data["deployment_id"]

    status = run_cli(tmp_path, "status", dep_id)
    assert status.returncode == 0 and "running" in status.stdout

    resumed = run_cli(tmp_path, "resume", dep_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "completed" in resumed.stdout
    assert runlog.read_text().split() == ["one", "two", "three", "three", "four"]
    final = json.loads(state_file.read_text())
    assert final["status"] == "completed" and final["end_time"]

    again = run_cli(tmp_path, "deploy", "--resume", "--deployment-id", dep_id)
    assert again.returncode == 0 and "already completed" in again.stdout

    listing = run_cli(tmp_path, "list")
    assert dep_id in listing.stdout and "completed" in listing.stdout


def test_resume_unknown_id_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "resume", "20990101-000000-abcdef")
    assert proc.returncode != 0
    assert proc.stderr.startswith("error: no deployment") and "Traceback" not in proc.stderr
    bad = run_cli(tmp_path, "resume", "../../etc/passwd")
    assert bad.returncode != 0 and "malformed deployment id" in bad.stderr
