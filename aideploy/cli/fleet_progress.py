"""Live progress of a fleet run: one line per host with its current step, and the totals.

On a terminal a ``rich`` live table is redrawn as hosts move on; with ``--plain``, ``NO_COLOR`` or
output that is not a terminal, every change is one timestamped line (``HOST: step 2/5 build``).
Hosts report from their own threads: every update takes one lock. The final summary table
(host, result, steps, duration, recoveries, what was learned) is printed by :func:`summary`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import click

from aideploy.cli.progress import plain
from aideploy.engine.fleet_state import RunState

#: results shown in the totals line, in order
_TOTALS = ("pending", "running", "ok", "failed", "unhealthy", "paused")
_COLOURS = {"ok": "green", "failed": "red", "unhealthy": "red", "paused": "yellow"}


@dataclass
class _Row:
    host: str
    state: str = "pending"
    step: str = ""
    note: str = ""
    started: float | None = None
    ended: float | None = None
    recoveries: list[str] = field(default_factory=list)


class FleetProgress:
    """The :class:`~aideploy.services.fleet.FleetDisplay` of the command line."""

    def __init__(self, run: RunState, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.plain = plain()
        self._lock = threading.Lock()
        self._rows = {h.name: _Row(h.name, h.result.value) for h in run.hosts}
        self._batch = ""
        self._live: Any = None

    # -- as a context: the live table on a terminal ------------------------------------------

    def __enter__(self) -> FleetProgress:
        if not self.plain and self.verbosity >= 0:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._table(), console=Console(), refresh_per_second=8, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            with self._lock:
                self._live.update(self._table())
            self._live.__exit__(kind, exc, tb)
            self._live = None

    # -- what the run reports ----------------------------------------------------------------

    def __call__(self, host: str, event: str, **data: Any) -> None:
        with self._lock:
            line = self._apply(host, event, data)
            if self._live is not None:
                self._live.update(self._table())
            elif line and self.verbosity >= 0:
                stamp = datetime.now().strftime("%H:%M:%S")
                click.echo(f"{stamp} {line}")
                sys.stdout.flush()

    def _apply(self, host: str, event: str, data: dict[str, Any]) -> str | None:
        if not host:
            if event == "batch":
                self._batch = f"batch {data['number']}/{data['total']}"
                return f"{self._batch}: {', '.join(data['hosts'])}"
            return None
        row = self._rows.setdefault(host, _Row(host))
        match event:
            case "host_start":
                row.state, row.step, row.note = "running", "connecting", ""
                row.started, row.ended = time.monotonic(), None
                return f"{host}: started ({data.get('target', '')})"
            case "step_start":
                row.step = f"{data['index']}/{data['total']} {data['name']}"
                return f"{host}: step {row.step}"
            case "error":
                row.note = f"{data['error_class']} in {data['name']}"
                return f"{host}: {data['name']} failed: {data['error_class']}"
            case "recovery":
                row.note = f"recovering with {data['strategy']}"
                return f"{host}: recovering {data['name']} with {data['strategy']} ({data['why']})"
            case "outcome":
                row.recoveries.append(f"{data['strategy']} {data['outcome']}")
                return f"{host}: {data['strategy']}: {data['outcome']}"
            case "health":
                row.step = "health check"
                return f"{host}: health check"
            case "host_end":
                row.state, row.ended = data["result"], time.monotonic()
                row.step = ""
                row.note = data.get("reason") or ""
                reason = f": {row.note}" if row.note else ""
                return f"{host}: {row.state}{reason}"
            case _:
                return None

    # -- rendering ---------------------------------------------------------------------------

    def totals(self) -> str:
        counts = {name: 0 for name in _TOTALS}
        for row in self._rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        return f"{self._batch + ' - ' if self._batch else ''}{len(self._rows)} hosts: {shown}"

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.totals(), title_justify="left", expand=False)
        for column in ("host", "state", "step", "time", "note"):
            table.add_column(column, overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        for row in self._rows.values():
            elapsed = ""
            if row.started is not None:
                elapsed = f"{(row.ended or now) - row.started:.1f}s"
            colour = _COLOURS.get(row.state)
            state = f"[{colour}]{row.state}[/{colour}]" if colour else row.state
            table.add_row(row.host, state, row.step, elapsed, row.note[:80])
        return table


def summary_rows(run: RunState) -> list[list[str]]:
    rows = []
    for host in run.hosts:
        steps = f"{host.steps_done}/{host.steps_total}" if host.steps_total else "-"
        rows.append(
            [
                host.name,
                host.result.value,
                steps,
                f"{host.duration:.1f}s",
                "; ".join(host.recoveries) or "-",
                "; ".join(host.learned) or "-",
            ]
        )
    return rows


SUMMARY_HEADERS = ["host", "result", "steps", "duration", "recoveries", "learned"]


def summary(run: RunState) -> None:
    """The final table, and the run's outcome in one line."""
    from tabulate import tabulate

    click.echo(tabulate(summary_rows(run), headers=SUMMARY_HEADERS))
    ok = sum(1 for h in run.hosts if h.result.value == "ok")
    line = f"Run {run.run_id} {run.status.value}: {ok}/{len(run.hosts)} hosts ok"
    if run.reason:
        line += f"; {run.reason}"
    click.echo(line)
