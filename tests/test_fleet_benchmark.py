"""The fleet benchmark's short version: one host, one round, aideploy and the floor; each run is
checked by the benchmark itself (every host has its marker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_fleet_benchmark_runs_and_checks_its_hosts() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fleet.py"),
            "--hosts",
            "1",
            "--rounds",
            "1",
            "--bashrc",
            "0",
            "--tools",
            "aideploy,floor",
            "--markdown",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| no .bashrc | 1 | aideploy |" in proc.stdout
    assert "| no .bashrc | 1 | floor |" in proc.stdout
