"""Live progress: colours and a spinner on a terminal; plain timestamped lines otherwise."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from aideploy.cli.progress import SPINNER, ConsoleProgress, status_line
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


def test_plain_flag_on_a_terminal_is_plain(tmp_path: Path) -> None:
    out = _on_a_terminal(tmp_path, "--plain", *_deploy_args(tmp_path), env={"NO_COLOR": ""})
    assert "\x1b[" not in out
    lines = [line for line in out.replace("\r", "").splitlines() if line]
    assert lines and all(STAMP.match(line) for line in lines)
    assert any("[1/1] wait" in line for line in lines)


# -- a narrow terminal, drawn into a string --------------------------------------------------------

WIDTH = 40
LONG_NAME = "configure_the_backend_with_a_step_name_far_longer_than_the_screen"
WIDE_COMMAND = "echo '" + "部署" * 30 + "' && sleep 1"


class Screen:
    """Just enough of a terminal to replay what rich writes: text with autowrap (and the pending
    wrap at the last column), CR, LF, cursor up, erase line, SGR and cursor show/hide. A line
    the terminal had to wrap is recorded: that is where a live display tears."""

    TOKEN = re.compile(r"\x1b\[(\??[0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]")

    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.pending = False
        self.autowrapped: list[str] = []

    def feed(self, data: str) -> None:
        for match in self.TOKEN.finditer(data):
            token = match.group(0)
            if token == "\r":
                self.col, self.pending = 0, False
            elif token == "\n":
                self._down()
            elif match.group(2):
                self._control(match.group(1), match.group(2))
            else:
                self._put(token)

    def _down(self) -> None:
        self.row, self.col, self.pending = self.row + 1, 0, False
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _control(self, param: str, code: str) -> None:
        if code == "m" or param in ("?25", "?25l", "?25h") or code in "hl":
            return
        if code == "A":
            self.row, self.pending = max(0, self.row - int(param or 1)), False
        elif code == "K" and param == "2":
            self.rows[self.row] = []
        else:
            raise AssertionError(f"unexpected control sequence {param!r}{code}")

    def _put(self, char: str) -> None:
        cells = cell_len(char)
        if self.pending or self.col + cells > self.width:
            self.autowrapped.append("".join(self.rows[self.row]))
            self._down()
        line = self.rows[self.row]
        del line[self.col :]
        line.extend([char] + [""] * (cells - 1))
        self.col += cells
        self.pending = self.col >= self.width

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]


def _narrow(**kwargs: object) -> tuple[ConsoleProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, force_terminal=True, color_system="standard")
    return ConsoleProgress(0, console=console, **kwargs), out  # type: ignore[arg-type]


def _events(progress: ConsoleProgress, pause: float = 0.0) -> None:
    progress("step_start", index=3, total=11, name=LONG_NAME, description="Build the release")
    for command in (WIDE_COMMAND, "python manage.py migrate --noinput"):
        progress.on_command(command)
        time.sleep(pause)
    progress("error", name=LONG_NAME, error_class="dependency", tail="x\nNo module named 'django'")
    progress("recovery", strategy="pip_install_requirements", why="seen 4 times, 3 fixed")
    progress("outcome", strategy="pip_install_requirements", outcome="success")
    progress("step_done", name=LONG_NAME, attempts=2)


@pytest.mark.parametrize("width", [12, 20, 30, 40, 50, 80, 120])
@pytest.mark.parametrize("name", ["wait", LONG_NAME, "部署" * 40])
@pytest.mark.parametrize("command", ["", "sleep 0.6", WIDE_COMMAND])
def test_the_status_line_fits_any_width(width: int, name: str, command: str) -> None:
    line = status_line(name, 12.34, command, width)
    assert line.cell_len <= width
    if width >= 20:
        assert " 12.3s" in line.plain  # a long step name never pushes the clock off the line
    if width >= 80 and name == "wait":
        assert line.plain.startswith("  ") and f"wait  12.3s  {command[:10]}".rstrip() in line.plain


def test_events_wrap_to_a_narrow_console_with_their_indent() -> None:
    progress, out = _narrow(spinner=False)
    _events(progress)
    lines = out.getvalue().replace("\x1b[0m", "").split("\n")
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines if line]
    assert all(cell_len(line) <= WIDTH for line in lines), lines
    assert lines[0].startswith("[3/11] configure_the_backend")
    assert all(line.startswith("      ") for line in lines[1:]), lines  # hanging indent
    text = "".join("".join(lines).split())  # wrapped and folded, the same characters
    for expected in (
        f"[3/11] {LONG_NAME}: Build the release",
        f"$ {WIDE_COMMAND}",
        f"error in {LONG_NAME}: dependency: No module named 'django'",
        "recovery: pip_install_requirements (seen 4 times, 3 fixed)",
        "recovery pip_install_requirements: success",
        f"{LONG_NAME}: done in",
        ", 2 attempts",
    ):
        assert "".join(expected.split()) in text, expected


def test_a_live_run_on_a_narrow_terminal_leaves_no_torn_status_lines() -> None:
    progress, out = _narrow()
    with progress:
        _events(progress, pause=0.35)
    screen = Screen(WIDTH)
    screen.feed(out.getvalue())
    assert not screen.autowrapped, f"the terminal had to wrap: {screen.autowrapped}"
    shown = "\n".join(screen.lines())
    assert not re.search(f"[{SPINNER}]", shown), shown  # the status line went with the step
    assert re.search(f"[{SPINNER}]", out.getvalue()), "no status line was ever drawn"
    assert "12.3s" not in shown and "done in" in shown


def test_the_status_line_steps_aside_for_a_question() -> None:
    progress, out = _narrow()
    with progress:
        progress("step_start", index=1, total=1, name="wait", description="d")
        time.sleep(0.25)
        with progress.paused():
            drawn = out.getvalue()
            time.sleep(0.3)
            assert out.getvalue() == drawn  # nothing drawn while the operator is asked
        time.sleep(0.25)
        assert len(out.getvalue()) > len(drawn)  # back afterwards
        progress("step_done", name="wait", attempts=1)
