"""The simulated fleet benchmark's short version: five hosts through the real fleet code path
with the recorded timings replayed; every host ends ok, every command the hosts ran was one the
recording has, and the knowledge base took each host's deployment, step runs and recoveries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fleet_scale.py"


def test_fleet_scale_benchmark_replays_a_small_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "one", "--hosts", "5", "--forks", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.splitlines()[-1])
    assert figures["results"] == {"ok": 5}
    assert figures["unreplayed_commands"] == 0
    # per host: its deployment, 7 step runs (two steps run twice), 2 recovery outcomes
    assert figures["kb_rows"] == {
        "deployments": 5,
        "step_runs": 35,
        "error_signatures": 1,
        "recovery_attempts": 10,
    }
    assert figures["threads"] >= 3 and figures["fds"] > 0 and figures["cpu_s"] > 0
