"""Live progress on the console: step n of N, elapsed time, the current command, each error and
recovery as it happens; a spinner while a step runs on a terminal.

On a terminal, lines are coloured and a spinner line shows the running step and command; when
output is not a terminal (CI, pipes), or ``NO_COLOR`` is set, every line is plain and starts with
a timestamp and there is no spinner.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from datetime import datetime
from typing import Any, TextIO

import click

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def plain(stream: TextIO | None = None) -> bool:
    """True when output should be plain timestamped lines (not a terminal, or NO_COLOR)."""
    stream = stream or sys.stdout
    return not stream.isatty() or bool(os.environ.get("NO_COLOR"))


def say(message: str, *, fg: str | None = None, err: bool = False) -> None:
    if plain(sys.stderr if err else sys.stdout):
        stamp = datetime.now().strftime("%H:%M:%S")
        click.echo(f"{stamp} {message}", err=err)
    else:
        click.secho(message, fg=fg, err=err)


class ConsoleProgress:
    """The executor's ``progress(event, **data)`` callback plus the runner's line and command
    hooks. ``verbosity``: -1 errors and the result only, 0 steps and commands, 1 also output."""

    def __init__(self, verbosity: int, *, spinner: bool | None = None) -> None:
        self.verbosity = verbosity
        self.step_started = 0.0
        self.step = ""
        self.command = ""
        self._lock = threading.RLock()
        self._spin = (not plain()) if spinner is None else spinner
        self._spinning = threading.Event()
        self._thread: threading.Thread | None = None

    # -- executor events -------------------------------------------------------------------

    def __call__(self, event: str, **data: Any) -> None:
        if event in ("step_done", "step_skip", "deployment_end", "error"):
            self._stop_spinner()
        if self.verbosity < 0 and event not in ("error", "deployment_end"):
            return
        if event == "step_start":
            self.step_started = time.monotonic()
            self.step = str(data["name"])
            self._say(
                f"[{data['index']}/{data['total']}] {data['name']}: {data['description']}",
                fg="cyan",
            )
            self._start_spinner()
        elif event == "step_skip":
            self._say(f"      {data['name']}: already done, skipped", fg="blue")
        elif event == "step_done":
            took = time.monotonic() - self.step_started
            extra = f", {data['attempts']} attempts" if data["attempts"] > 1 else ""
            self._say(f"      {data['name']}: done in {took:.1f}s{extra}", fg="green")
        elif event == "error":
            last = data["tail"].splitlines()[-1] if data["tail"] else ""
            self._say(f"      error in {data['name']}: {data['error_class']}: {last}", fg="red")
        elif event == "recovery":
            self._say(f"      recovery: {data['strategy']} ({data['why']})", fg="yellow")
        elif event == "outcome":
            self._say(f"      recovery {data['strategy']}: {data['outcome']}", fg="yellow")

    # -- runner hooks ----------------------------------------------------------------------

    def on_command(self, command: str) -> None:
        """The command about to run (already redacted)."""
        self.command = " ".join(command.split())
        if self.verbosity >= 0:
            self._say(f"      $ {_cut(self.command, 110)}", fg="bright_black")

    def line(self, stream: str, text: str) -> None:
        if self.verbosity > 0:
            with self._lock:
                self._clear()
                click.echo(f"        {text}", err=stream == "stderr")

    # -- output ----------------------------------------------------------------------------

    def _say(self, message: str, fg: str | None = None) -> None:
        with self._lock:
            self._clear()
            say(message, fg=fg)

    def _clear(self) -> None:
        if self._spin and self._spinning.is_set():
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()

    def _start_spinner(self) -> None:
        if not self._spin or self.verbosity < 0:
            return
        self._spinning.set()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run_spinner, daemon=True)
            self._thread.start()

    def _stop_spinner(self) -> None:
        with self._lock:
            self._clear()
            self._spinning.clear()

    def _run_spinner(self) -> None:
        frame = 0
        while True:
            time.sleep(0.1)
            if not self._spinning.is_set():
                if self._thread is not threading.current_thread():
                    return
                continue
            with self._lock:
                if not self._spinning.is_set():
                    continue
                width = shutil.get_terminal_size((100, 20)).columns
                elapsed = time.monotonic() - self.step_started
                text = (
                    f"  {SPINNER[frame % len(SPINNER)]} {self.step} {elapsed:5.1f}s  {self.command}"
                )
                sys.stdout.write("\r\033[K" + _cut(text, max(20, width - 1)))
                sys.stdout.flush()
            frame += 1


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
