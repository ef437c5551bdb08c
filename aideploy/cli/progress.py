"""Live progress on the console: step n of N, elapsed time, the current command, each error and
recovery as it happens; a live status line while a step runs on a terminal.

On a terminal, ``rich`` prints the lines coloured and word-wrapped to the terminal's width (a
continuation line is indented under its text), and keeps one status line below them: spinner,
running step, elapsed time, command. The status line is cut to the width in terminal cells, so it
never wraps (a wrapped status line is what tore the old display: ``\\r`` only goes back to the
start of the last row). When output is not a terminal (CI, pipes), ``NO_COLOR`` is set or
``--plain`` was given, every line is plain and starts with a timestamp and there is no status line.

rich is imported only when a terminal needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import click

from aideploy.cli.options import settings
from aideploy.engine.logs import ROOT

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live
    from rich.text import Text

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
COMMAND_CUT = 110  # a command line is shortened to this many characters, on a terminal or not


def plain(stream: TextIO | None = None) -> bool:
    """True when output should be plain timestamped lines (not a terminal, NO_COLOR, --plain)."""
    stream = stream or sys.stdout
    return settings().plain or not stream.isatty() or bool(os.environ.get("NO_COLOR"))


def say(message: str, *, fg: str | None = None, err: bool = False) -> None:
    if plain(sys.stderr if err else sys.stdout):
        stamp = datetime.now().strftime("%H:%M:%S")
        click.echo(f"{stamp} {message}", err=err)
    elif _active is not None:  # a live status line is up: print above it
        _active.echo(message, fg=fg, err=err)
    else:
        _print(_console(err), message, fg=fg, hang=0)


# -- rich ----------------------------------------------------------------------------------------

_consoles: dict[bool, Console] = {}
_active: ConsoleProgress | None = None  # the progress whose status line is on the screen


def _console(err: bool) -> Console:
    """The terminal's console for stdout or stderr (it follows sys.stdout/sys.stderr)."""
    if err not in _consoles:
        from rich.console import Console

        _consoles[err] = Console(stderr=err, highlight=False, markup=False, emoji=False)
    return _consoles[err]


def hanging(console: Console, message: str, hang: int, style: str | None = None) -> Text:
    """``message`` word-wrapped to the console's width, its continuation lines indented by
    ``hang`` (the width of its prefix, such as ``[3/11] `` or the six spaces of an event line)."""
    from rich.text import Text

    width = console.width
    if width - hang < 12:  # too narrow to indent: wrap from the first column
        hang = 0
    head, body = message[:hang], message[hang:]
    lines: list[str] = []
    for paragraph in body.split("\n"):
        wrapped = Text(paragraph).wrap(console, max(1, width - hang), overflow="fold")
        lines.extend(
            line.plain.rstrip() if i == 0 else line.plain.strip() for i, line in enumerate(wrapped)
        )
    joined = ("\n" + " " * hang).join(lines)
    return Text(head + joined, style=style or "", no_wrap=True, overflow="ignore")


def _print(console: Console, message: str, *, fg: str | None, hang: int) -> None:
    console.print(hanging(console, message, hang, fg), crop=False)


def status_line(step: str, elapsed: float, command: str, width: int) -> Text:
    """``  ⠋ step  12.3s  command``, cut to ``width`` cells: a long step name keeps at most about
    half the line so the elapsed time stays visible, and the command gets what is left."""
    from rich.cells import cell_len
    from rich.text import Text

    frame = SPINNER[int(elapsed * 10) % len(SPINNER)]
    clock = f"{elapsed:5.1f}s"
    lead = "  " if width >= 30 else ""
    fixed = cell_len(lead) + 2 + 1 + len(clock)  # lead, frame and space, space before the clock
    room = max(1, width - fixed)
    name = Text(step)
    wanted = cell_len(step)
    if command:
        wanted = min(wanted, max(10, room // 2))
    name.truncate(min(wanted, room), overflow="ellipsis")
    line = Text.assemble(lead, frame, " ", name, " ", clock)
    left = width - line.cell_len - 2
    if command and left >= 6:
        cmd = Text(command, style="bright_black")
        cmd.truncate(left, overflow="ellipsis")
        line.append("  ")
        line.append_text(cmd)
    line.truncate(width, overflow="ellipsis")
    line.no_wrap = True
    return line


class _Status:
    """The live renderable: the status line as it is at each refresh."""

    def __init__(self, progress: ConsoleProgress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        p = self.progress
        yield status_line(p.step, time.monotonic() - p.step_started, p.command, options.max_width)


# -- the progress --------------------------------------------------------------------------------


class ConsoleProgress:
    """The executor's ``progress(event, **data)`` callback plus the runner's line and command
    hooks. ``verbosity``: -1 errors and the result only, 0 steps and commands, 1 also output.

    Use it as a context manager (or call :meth:`close`) so the status line is taken down and the
    cursor shown again however the run ends. ``console``: a rich console to draw on instead of
    the terminal (tests); it implies the terminal display."""

    def __init__(
        self, verbosity: int, *, spinner: bool | None = None, console: Console | None = None
    ) -> None:
        self.verbosity = verbosity
        self.step_started = 0.0
        self.step = ""
        self.command = ""
        self._lock = threading.RLock()
        self.plain = plain() if console is None else False
        self._console = console
        self._err_console = console
        self._spin = (not self.plain) if spinner is None else spinner
        self._live: Live | None = None
        self._running = False  # a step is running (the status line belongs on the screen)
        self._paused = 0
        self._stderr_redirected = False  # stderr goes through the status line's console
        self._log_streams: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Take the status line down (the cursor comes back)."""
        with self._lock:
            self._running = False
            self._stop_live()

    # -- executor events -------------------------------------------------------------------

    def __call__(self, event: str, **data: Any) -> None:
        if event in ("step_done", "step_skip", "deployment_end", "error"):
            with self._lock:
                self._running = False
                self._stop_live()
        if self.verbosity < 0 and event not in ("error", "deployment_end"):
            return
        if event == "step_start":
            self.step_started = time.monotonic()
            self.step = str(data["name"])
            head = f"[{data['index']}/{data['total']}] "
            self._say(f"{head}{data['name']}: {data['description']}", fg="cyan", hang=len(head))
            self._start_live()
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
            self._say(f"      $ {_cut(self.command, COMMAND_CUT)}", fg="bright_black", hang=8)

    def line(self, stream: str, text: str) -> None:
        if self.verbosity <= 0:
            return
        err = stream == "stderr"
        if self.plain:
            click.echo(f"        {text}", err=err)
        else:
            self.echo(f"        {text}", err=err, hang=8)

    # -- the terminal ----------------------------------------------------------------------

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The status line off the screen while the operator is asked something."""
        with self._lock:
            self._paused += 1
            self._stop_live()
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1
                if self._running:
                    self._start_live()

    def echo(
        self, message: str, *, fg: str | None = None, err: bool = False, hang: int = 0
    ) -> None:
        """One message on the terminal, above the status line when it is up. stderr text goes
        through the status line's console when stderr is the same terminal (the live display
        redirects it), straight to stderr otherwise."""
        with self._lock:
            if err and not self._stderr_redirected:
                console = self._err_console or _console(True)
            else:
                console = self._console or _console(False)
            _print(console, message, fg=fg, hang=hang)

    def _say(self, message: str, fg: str | None = None, hang: int = 6) -> None:
        if self.plain:
            say(message, fg=fg)
        else:
            self.echo(message, fg=fg, hang=hang)

    def _start_live(self) -> None:
        global _active
        with self._lock:
            self._running = True
            if not self._spin or self.verbosity < 0 or self._paused or self._live is not None:
                return
            from rich.live import Live

            console = self._console or _console(False)
            stderr_here = self._console is None and sys.stderr.isatty()
            self._live = Live(
                _Status(self),
                console=console,
                transient=True,
                refresh_per_second=10,
                redirect_stdout=self._console is None,
                redirect_stderr=stderr_here,
            )
            self._live.start()
            _active = self
            self._stderr_redirected = stderr_here
            if stderr_here:  # the log handlers kept the real stderr: point them at the redirect
                for handler in _stderr_handlers():
                    self._log_streams.append((handler, handler.setStream(sys.stderr)))

    def _stop_live(self) -> None:
        global _active
        with self._lock:
            if self._live is None:
                return
            for handler, stream in self._log_streams:
                handler.setStream(stream)
            self._log_streams.clear()
            self._live.stop()
            self._live = None
            self._stderr_redirected = False
            if _active is self:
                _active = None


def _stderr_handlers() -> list[logging.StreamHandler[Any]]:
    """The aideploy logger's handlers that write to the real stderr (the console log)."""
    real = getattr(sys.stderr, "rich_proxied_file", sys.stderr)
    return [
        h
        for h in logging.getLogger(ROOT).handlers
        if isinstance(h, logging.StreamHandler) and h.stream is real
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
