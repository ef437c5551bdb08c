"""Live progress: colours and a spinner on a terminal; plain timestamped lines otherwise."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from tests.support.cli import run_cli

PLAN = """
name = "slow"
[[steps]]
name = "wait"
description = "a step long enough for the spinner"
commands = ["sleep 0.6", "echo done-waiting"]
"""
STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


def _on_a_terminal(tmp_path: Path, *args: str, env: dict[str, str]) -> str:
    """Run the CLI with a pseudo-terminal as stdout and stderr; return everything it wrote."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aideploy", *args],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        cwd=tmp_path,
        env={**os.environ, "AIDEPLOY_HOME": str(tmp_path / "home"), "COLUMNS": "120", **env},
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    os.close(main)
    return b"".join(chunks).decode("utf-8", "replace")


def _deploy_args(tmp_path: Path) -> list[str]:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    return ["deploy", "--local", "--plan", str(plan), "--kb", str(tmp_path / "kb.sqlite")]


def test_terminal_gets_colour_and_a_spinner(tmp_path: Path) -> None:
    env = {k: "" for k in ("NO_COLOR",)}
    out = _on_a_terminal(tmp_path, *_deploy_args(tmp_path), env=env)
    assert "\x1b[36m[1/1] wait" in out  # cyan step header
    assert re.search("[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] wait +\\d+\\.\\ds", out), "no spinner line"
    assert "$ sleep 0.6" in out  # the current command
    assert not any(STAMP.match(line) for line in out.replace("\r", "\n").splitlines())


def test_no_color_on_a_terminal_is_plain(tmp_path: Path) -> None:
    out = _on_a_terminal(tmp_path, *_deploy_args(tmp_path), env={"NO_COLOR": "1"})
    assert "\x1b[" not in out
    assert "[1/1] wait" in out


def test_pipes_get_plain_timestamped_lines(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, *_deploy_args(tmp_path), env={"NO_COLOR": ""})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines and all(STAMP.match(line) for line in lines)
    assert any("$ sleep 0.6" in line for line in lines)
