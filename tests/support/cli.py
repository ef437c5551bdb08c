"""Run the real `aideploy` CLI as a subprocess, with its home in a test's temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def _env(cwd: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, "AIDEPLOY_HOME": str(cwd / "home"), "NO_COLOR": "1", **(env or {})}


def run_cli(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m aideploy ARGS`` in ``cwd`` with ``AIDEPLOY_HOME=cwd/home`` and no colour."""
    return subprocess.run(
        [sys.executable, "-m", "aideploy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_env(cwd, env),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_cli(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """:func:`run_cli`, started in the background (output piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "aideploy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=_env(cwd, env),
        stdin=subprocess.DEVNULL,
    )
