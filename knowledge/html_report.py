"""The knowledge-base report as one self-contained HTML page, with plots.

:func:`write_html_report` runs the same queries as ``aideploy learn report``
(:func:`aideploy.knowledge.report.build_report`) plus the deployments' start and end times, draws
four plots with matplotlib's Agg renderer and writes a single HTML file: the plots are embedded
as base64 PNG images, the style is inline, nothing is fetched from anywhere. Every value taken from
the knowledge base is HTML-escaped. The page is also well-formed XML, so it parses with strict
parsers too.

The ``plot_*`` functions draw on a matplotlib Axes the caller provides; the analysis notebook in
``notebooks/`` uses them with pyplot, this module with bare :class:`~matplotlib.figure.Figure`
objects (no global pyplot state, safe in threads).

Over 400 lines because the page is one document: each section's plot and table sit beside the
query result they draw, and splitting them would scatter one page over several modules.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from aideploy import __version__
from aideploy.core.atomic import atomic_file
from aideploy.core.errors import UsageError
from aideploy.core.private import FILE_MODE, private_dir
from aideploy.knowledge.models import DEPLOYMENTS
from aideploy.knowledge.report import (
    SECTIONS,
    TOP_SIGNATURES,
    Filters,
    Report,
    build_report,
    deployment_filters,
)

if TYPE_CHECKING:
    from aideploy.knowledge.store import KnowledgeBase
    from aideploy.knowledge.suggest import Suggestion

TOP_CLASSES = 10
COLORS = {"succeeded": "#2e7d32", "failed": "#c62828", "other": "#757575", "line": "#1565c0"}
EMPTY = "nothing recorded yet"
_D = DEPLOYMENTS.c

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
  max-width: 70em; padding: 0 1em; color: #212121; }
h1 { margin-bottom: 0.2em; }
.meta { color: #616161; margin-top: 0; }
.summary { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0 2em; }
.summary div { border: 1px solid #e0e0e0; border-radius: 6px; padding: 0.6em 1em; }
.summary b { display: block; font-size: 1.5em; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(30em, 1fr)); gap: 1em; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #eeeeee; }
figcaption { color: #616161; font-size: 0.9em; }
table { border-collapse: collapse; margin-bottom: 2em; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e0e0e0; padding: 0.3em 0.8em; text-align: left;
  vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td code { white-space: pre-wrap; word-break: break-word; }
"""


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentTime:
    """One deployment's start, end and duration (None while it has not ended)."""

    id: str
    profile: str
    host: str
    status: str
    started_at: datetime
    seconds: float | None


def deployment_times(kb: KnowledgeBase, filters: Filters | None = None) -> list[DeploymentTime]:
    """Start, end and duration of every deployment the filters select, oldest first."""
    f = filters or Filters()
    query = deployment_filters(
        select(_D.id, _D.profile, _D.host, _D.status, _D.started_at, _D.ended_at).order_by(
            _D.started_at, _D.id
        ),
        f,
    )
    with kb.reading() as conn:
        rows = conn.execute(query).all()
    return [
        DeploymentTime(
            id=r[0],
            profile=r[1] or "",
            host=r[2] or "",
            status=r[3] or "",
            started_at=r[4],
            seconds=max(0.0, (r[5] - r[4]).total_seconds()) if r[5] and r[4] else None,
        )
        for r in rows
    ]


def duration_summary(times: Sequence[DeploymentTime]) -> list[dict[str, Any]]:
    """Per final status: how many ended, median, 90th percentile and longest duration (s)."""
    by_status: dict[str, list[float]] = {}
    for t in times:
        if t.seconds is not None:
            by_status.setdefault(t.status, []).append(t.seconds)
    rows = []
    for status in sorted(by_status, key=lambda s: (-len(by_status[s]), s)):
        values = sorted(by_status[status])
        rows.append(
            {
                "status": status,
                "deployments": len(values),
                "median_seconds": round(statistics.median(values), 1),
                "p90_seconds": round(_percentile(values, 0.9), 1),
                "longest_seconds": round(values[-1], 1),
            }
        )
    return rows


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, int(-(-q * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- plots -----------------------------------------------------------------------------------


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, EMPTY, ha="center", va="center", transform=ax.transAxes, color="#757575")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_strategy_success(ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Horizontal bars: weighted success rate per strategy, labelled with its attempts."""
    title = "Success rate per strategy"
    if not rows:
        _empty(ax, title)
        return
    ordered = sorted(rows, key=lambda r: (r["success_rate"] or 0.0, r["attempts"]))
    names = [str(r["strategy"]) for r in ordered]
    rates = [100.0 * float(r["success_rate"] or 0.0) for r in ordered]
    bars = ax.barh(names, rates, color=COLORS["line"])
    for bar, row in zip(bars, ordered, strict=True):
        ax.text(
            bar.get_width() + 1,
            bar.get_y() + bar.get_height() / 2,
            f"{row['attempts']} tries",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, 115)
    ax.set_xlabel("recovered (%)")
    ax.set_title(title)


def plot_learning_curve(
    ax: Any,
    first_try: Sequence[dict[str, Any]],
    deployments: Sequence[dict[str, Any]] = (),
) -> None:
    """First-try recovery rate per week (and, lighter, the deployments' success rate)."""
    title = "First-try recovery rate per week (learning curve)"
    if not first_try:
        _empty(ax, title)
        return
    weeks = [str(r["week"]) for r in first_try]
    rates = [
        None if r["first_try_rate"] is None else 100.0 * r["first_try_rate"] for r in first_try
    ]
    ax.plot(weeks, rates, marker="o", color=COLORS["line"], label="first try recovered")
    if deployments:
        dep_weeks = {str(r["week"]): r["success_rate"] for r in deployments}
        ax.plot(
            weeks,
            [None if dep_weeks.get(w) is None else 100.0 * dep_weeks[w] for w in weeks],
            linestyle="--",
            color=COLORS["succeeded"],
            alpha=0.6,
            label="deployments succeeded",
        )
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_xlabel("week starting")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)


def plot_error_classes(ax: Any, rows: Sequence[dict[str, Any]], top: int = TOP_CLASSES) -> None:
    """Bars: the most frequent error classes (occurrences)."""
    title = "Top error classes"
    if not rows:
        _empty(ax, title)
        return
    shown = list(rows[:top])[::-1]
    ax.barh([str(r["error_class"]) for r in shown], [r["seen"] for r in shown], color="#ef6c00")
    ax.set_xlabel("occurrences")
    ax.set_title(title)


def plot_durations(ax: Any, times: Sequence[DeploymentTime]) -> None:
    """Stacked histogram of deployment durations (minutes) by final status."""
    title = "Deployment durations"
    ended = [t for t in times if t.seconds is not None]
    if not ended:
        _empty(ax, title)
        return
    groups: dict[str, list[float]] = {}
    for t in ended:
        key = t.status if t.status in ("succeeded", "failed") else "other"
        groups.setdefault(key, []).append((t.seconds or 0.0) / 60.0)
    names = [k for k in ("succeeded", "failed", "other") if k in groups]
    ax.hist(
        [groups[k] for k in names],
        bins=20,
        stacked=True,
        color=[COLORS[k] for k in names],
        label=names,
    )
    ax.set_xlabel("minutes")
    ax.set_ylabel("deployments")
    ax.legend(fontsize=8)
    ax.set_title(title)


def _png(draw: Any, *args: Any) -> str:
    """Draw with ``draw(ax, *args)`` on a new Agg figure; the PNG, base64-encoded."""
    from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found,unused-ignore]
        FigureCanvasAgg,
    )
    from matplotlib.figure import Figure  # type: ignore[import-not-found,unused-ignore]

    fig = Figure(figsize=(7.5, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig.add_subplot(), *args)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- HTML ------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_cell(key: str, value: Any) -> str:
    """How a report value is shown in the page (before escaping)."""
    if value is None:
        return "-"
    if key.endswith("rate"):
        return f"{float(value):.1%}"
    if key == "mean_time_to_recovery":
        return f"{float(value):.1f} s"
    if key.endswith("_seconds"):
        return f"{float(value) / 60.0:.1f} min"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _table(name: str, rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return f'<p id="section-{_e(name)}" class="empty">({EMPTY})</p>'
    keys = list(rows[0])
    head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
    body = []
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            text = _e(format_cell(k, v))
            if k == "signature":
                cells.append(f"<td><code>{text}</code></td>")
            elif isinstance(v, int | float) and not isinstance(v, bool):
                cells.append(f'<td class="num">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="section-{_e(name)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _summary(report: Report, times: Sequence[DeploymentTime]) -> list[tuple[str, str]]:
    deps = report.sections.get("deployments", [])
    total = sum(r["deployments"] for r in deps)
    ok = sum(r["succeeded"] for r in deps)
    first = report.sections.get("first_try", [])
    failures = sum(r["failures"] for r in first)
    ended = [t.seconds for t in times if t.seconds is not None]
    return [
        ("deployments", str(total)),
        ("succeeded", format_cell("rate", ok / total) if total else "-"),
        ("failures recovered or not", str(failures)),
        (
            "first-try rate, latest week",
            format_cell("rate", first[-1]["first_try_rate"]) if first else "-",
        ),
        ("median duration", format_cell("_seconds", statistics.median(ended)) if ended else "-"),
    ]


def render_html(
    report: Report,
    times: Sequence[DeploymentTime],
    *,
    source: str = "",
    generated: datetime | None = None,
    suggestions: Sequence[Suggestion] | None = None,
) -> str:
    """The whole page: summary, four plots, the suggestions (when given), then every report
    table."""
    s = report.sections
    plots = [
        (
            "strategies",
            "Weighted success rate of each recovery strategy (skipped tries left out).",
            _png(plot_strategy_success, s.get("strategies", [])),
        ),
        (
            "learning-curve",
            "Share of failures whose first recovery tried worked, per week.",
            _png(plot_learning_curve, s.get("first_try", []), s.get("deployments", [])),
        ),
        (
            "error-classes",
            "Error classes by number of occurrences.",
            _png(plot_error_classes, s.get("classes", [])),
        ),
        ("durations", "Start to end of each finished deployment.", _png(plot_durations, times)),
    ]
    f = report.filters
    filters = (
        ", ".join(
            f"{k} {v}"
            for k, v in (
                ("since", f.since.date().isoformat() if f.since else None),
                ("profile", f.profile),
                ("host", f.host),
            )
            if v is not None
        )
        or "none"
    )
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        "<title>aideploy knowledge base report</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>What the knowledge base has learned</h1>",
        f'<p class="meta">{_e(source)} · filters: {_e(filters)} · generated {_e(when)} '
        f"by aideploy {_e(__version__)}</p>",
        '<div class="summary">',
        *(f"<div>{_e(label)}<b>{_e(value)}</b></div>" for label, value in _summary(report, times)),
        "</div>",
        '<div class="plots">',
    ]
    for name, caption, png in plots:
        parts.append(
            f'<figure id="plot-{name}"><img alt="{_e(caption)}" '
            f'src="data:image/png;base64,{png}" />'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    if suggestions is not None:
        parts.append('<h2 id="suggestions">Suggestions</h2>')
        rows = [
            {"kind": s.kind, "subject": s.subject, "advice": s.advice, "evidence": s.evidence}
            for s in suggestions
        ]
        parts.append(_table("suggestions", rows))
    for name, title in SECTIONS.items():
        parts.append(f"<h2>{_e(title)}</h2>")
        parts.append(_table(name, s.get(name, [])))
    parts.append("<h2>Deployment durations</h2>")
    parts.append(_table("durations", duration_summary(times)))
    parts.extend(["</body>", "</html>", ""])
    return "\n".join(parts)


def _filters(since: datetime | str | None, profile: str | None, host: str | None) -> Filters:
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise UsageError(f"--since {since!r}: expected a date like 2025-01-31") from None
    if since is not None and since.tzinfo is not None:
        since = since.astimezone(UTC).replace(tzinfo=None)
    return Filters(since=since, profile=profile, host=host)


def build_html(
    kb: KnowledgeBase,
    *,
    since: datetime | str | None = None,
    profile: str | None = None,
    host: str | None = None,
    top: int = TOP_SIGNATURES,
    suggestions: Sequence[Suggestion] | None = None,
) -> str:
    """The HTML page for ``kb`` (see :func:`write_html_report`)."""
    filters = _filters(since, profile, host)
    report = build_report(kb, filters, top=top)
    return render_html(
        report, deployment_times(kb, filters), source=kb.url, suggestions=suggestions
    )


def write_html_report(
    kb: KnowledgeBase,
    path: str | Path,
    *,
    since: datetime | str | None = None,
    profile: str | None = None,
    host: str | None = None,
    top: int = TOP_SIGNATURES,
    suggestions: Sequence[Suggestion] | None = None,
) -> Path:
    """Write the self-contained HTML report of ``kb`` to ``path`` (atomically); returns the path.

    ``since`` is a datetime or an ISO date (``2025-01-31``); ``profile`` and ``host`` keep only
    those deployments, as ``aideploy learn report`` does. ``suggestions`` (``learn suggest``'s)
    get their own section; None leaves it out (``ai_features.optimization_suggestions`` off).
    """
    page = build_html(kb, since=since, profile=profile, host=host, top=top, suggestions=suggestions)
    target = Path(path).expanduser()
    private_dir(target.parent)
    with atomic_file(target, mode=FILE_MODE, text=True) as handle:
        handle.write(page)
    return target


__all__ = [
    "DeploymentTime",
    "build_html",
    "deployment_times",
    "duration_summary",
    "plot_durations",
    "plot_error_classes",
    "plot_learning_curve",
    "plot_strategy_success",
    "render_html",
    "write_html_report",
]
