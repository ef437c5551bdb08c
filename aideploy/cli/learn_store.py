"""``aideploy learn`` commands over the knowledge base store: report, signatures, strategies,
export, import, trust.

Library errors are raised as the engine's error classes; the main CLI prints them as one line with
their exit code (ImportRejected: 2).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from tabulate import tabulate

from aideploy.core.errors import ImportRejected, UsageError
from aideploy.core.inputs import STDIN, check_regular
from aideploy.core.strategies import CATALOGUE
from aideploy.engine import audit
from aideploy.knowledge.exchange import DEFAULT_IMPORT_WEIGHT, export_kb, import_kb
from aideploy.knowledge.report import FORMATS, Filters, build_report, render
from aideploy.knowledge.store import SourceInfo
from aideploy.services.compose import import_classifier, open_knowledge

F = TypeVar("F", bound=Callable[..., Any])

KB_HELP = (
    "Knowledge base: a file path (SQLite) or a SQLAlchemy URL such as "
    "postgresql+psycopg://user@host/db. Default: $AIDEPLOY_KB, then knowledge.db in the user "
    "data directory."
)


def kb_option(func: F) -> F:
    return click.option("--kb", "kb_url", metavar="PATH_OR_URL", default=None, help=KB_HELP)(func)


def format_option(func: F) -> F:
    """``--format`` and its shorthand ``--json`` (the same as ``--format json``)."""

    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, fmt: str, **kwargs: Any) -> Any:
        return func(*args, fmt="json" if as_json else fmt, **kwargs)

    wrapper = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print JSON (the same as --format json; docs/json.md).",
    )(wrapper)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(wrapper)  # type: ignore[return-value]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since {value!r}: expected a date like 2025-01-31") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _rows_out(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        import csv
        import io

        out = io.StringIO()
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue()
    if not rows:
        return "(nothing recorded yet)"
    return tabulate(
        [list(r.values()) for r in rows], headers=[k.replace("_", " ") for k in rows[0]]
    )


@click.command("report")
@kb_option
@format_option
@click.option("--since", metavar="DATE", help="Only what happened on or after DATE (YYYY-MM-DD).")
@click.option("--profile", help="Only deployments of this profile.")
@click.option("--host", help="Only deployments to this host.")
@click.option("--top", default=15, show_default=True, help="How many signatures to list.")
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Write the report with plots to FILE as a self-contained HTML page (instead of text).",
)
def report_cmd(
    kb_url: str | None,
    fmt: str,
    since: str | None,
    profile: str | None,
    host: str | None,
    top: int,
    html_file: str | None,
) -> None:
    """What the knowledge base has learned: deployments and success rate per week, the most
    frequent errors, per-strategy success and time to recovery, the best strategy per error
    class, and the first-try recovery rate per week (the learning curve)."""
    with open_knowledge(kb_url, existing=True) as kb:
        if html_file:
            from aideploy.cli.learn_html import write_html_report

            written = write_html_report(
                kb, html_file, since=_since(since), profile=profile, host=host, top=top
            )
            click.echo(f"wrote {written}")
            return
        report = build_report(kb, Filters(since=_since(since), profile=profile, host=host), top=top)
    click.echo(render(report, fmt))


@click.command("signatures")
@kb_option
@format_option
@click.option("--limit", default=50, show_default=True, help="How many signatures to list.")
def signatures_cmd(kb_url: str | None, fmt: str, limit: int) -> None:
    """Known error signatures, most frequent first."""
    with open_knowledge(kb_url, existing=True) as kb:
        sigs = kb.signatures(limit=limit)
    rows = [
        {
            "signature": s.text if fmt != "table" else _clip(s.text, 90),
            "error_class": s.error_class,
            "count": s.count,
            "last_seen": s.last_seen.isoformat(timespec="seconds"),
            "hash": s.hash if fmt != "table" else s.hash[:12],
        }
        for s in sigs
    ]
    click.echo(_rows_out(rows, fmt))


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", " | ")
    return text if len(text) <= width else text[: width - 1] + "…"


@click.command("strategies")
@kb_option
@format_option
def strategies_cmd(kb_url: str | None, fmt: str) -> None:
    """Strategies: their risk, statistics (attempts, weighted success rate, mean time to
    recovery), what they do and, for those stored in the KB, origin and whether they are trusted
    to run."""
    with open_knowledge(kb_url, existing=True) as kb:
        stats = {s.strategy: s for s in kb.strategy_stats()}
        known = {s.name: s for s in kb.strategies()}
    rows = []
    for name in sorted(set(stats) | set(known)):
        st, info, spec = stats.get(name), known.get(name), CATALOGUE.get(name)
        rows.append(
            {
                "strategy": name,
                "risk": spec.risk.value if spec else info.risk if info else None,
                "attempts": st.attempts if st else 0,
                "success_rate": round(st.success_rate, 4) if st else None,
                "mean_time_to_recovery": st.mean_time_to_recovery if st else None,
                "origin": info.origin if info else "builtin" if spec else "unknown",
                "trusted": info.trusted if info else True,
                "commands": len(info.commands or ()) if info else 0,
                "description": spec.description if spec else info.description if info else "",
            }
        )
    if fmt == "table":
        for r in rows:
            rate = r["success_rate"]
            r["success_rate"] = "-" if rate is None else f"{rate:.1%}"
            mttr = r["mean_time_to_recovery"]
            r["mean_time_to_recovery"] = "-" if mttr is None else f"{mttr:.1f}s"
            r["trusted"] = "yes" if r["trusted"] else "NO (learn trust)"
            r["description"] = _clip(str(r["description"]), 50)
            r["risk"] = r["risk"] or "-"
    click.echo(_rows_out(rows, fmt))


@click.command("export")
@kb_option
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--keep-hosts",
    is_flag=True,
    help="Keep host names, private IP addresses and deployment ids (they are replaced by "
    "default). Secrets are removed either way.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace FILE even when it is not an earlier export (an earlier export is replaced "
    "without it).",
)
def export_cmd(kb_url: str | None, file: str, keep_hosts: bool, force: bool) -> None:
    """Write the knowledge base to FILE as versioned JSON Lines ("-": standard output), with
    secrets and (by default) private host names and addresses removed."""
    with open_knowledge(kb_url, existing=True) as kb:
        if file == "-":
            export_kb(kb, sys.stdout, keep_hosts=keep_hosts)
            return
        count = export_kb(kb, file, keep_hosts=keep_hosts, replace=force)
    click.echo(f"exported {count} records to {file}", err=True)


@click.command("import")
@kb_option
@click.argument("file", type=click.Path(allow_dash=True))
@click.option(
    "--source", help="Name recorded as the origin of what is imported (default: FILE's name)."
)
@click.option(
    "--weight",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=DEFAULT_IMPORT_WEIGHT,
    show_default=True,
    help="How much an imported outcome counts compared with a local one.",
)
def import_cmd(kb_url: str | None, file: str, source: str | None, weight: float) -> None:
    """Import an export FILE: every line is checked first and a bad line rejects the whole file
    (exit 2, nothing imported); importing the same file again adds nothing. What it brings is
    recorded with its source and stays inert until `aideploy learn trust SOURCE`."""
    if file != STDIN:
        check_regular(file, error=ImportRejected)  # before the knowledge base is created
    with open_knowledge(kb_url) as kb:
        classify = import_classifier(kb)
        if file == "-":
            summary = import_kb(
                kb, sys.stdin, source_name=source or "stdin", weight=weight, classify=classify
            )
        else:
            summary = import_kb(kb, file, source_name=source, weight=weight, classify=classify)
    audit.try_record(
        "import",
        result="ok",
        target=kb.url,
        details={
            "source": summary.source,
            "records": summary.records,
            "untrusted": list(summary.untrusted),
            "classified": summary.classified,
        },
    )
    added = ", ".join(f"{n} {kind}s" for kind, n in summary.added.items() if n) or "nothing new"
    skipped = sum(summary.skipped.values())
    click.echo(
        f"imported {summary.records} records from {summary.source}: added {added}"
        + (f"; {skipped} already known" if skipped else "")
        + (f"; {summary.classified} without a class classified" if summary.classified else "")
    )
    if summary.was_trusted:
        click.echo(f"source {summary.source} brought something new and is untrusted again")
    if summary.trusted:
        click.echo(f"source {summary.source} is trusted (nothing new to review)")
        return
    click.echo(
        f"source {summary.source} is UNTRUSTED: what it brought is shown but not used; review "
        f"it with `aideploy learn trust {summary.source} --dry-run`, then "
        f"`aideploy learn trust {summary.source}`"
    )


def _describe_source(info: SourceInfo, *, revoke: bool) -> list[str]:
    """What trusting (or revoking) ``info`` changes, one line each."""
    state = "trusted" if info.trusted else "untrusted"
    verb = "revoking it makes inert" if revoke else "trusting it makes active"
    lines = [f"source {info.name} ({state}, imported {info.imported_at:%Y-%m-%d %H:%M})", verb]
    if info.patterns:
        lines.append(f"  patterns (detection rules): {', '.join(info.patterns)}")
    for name, commands in info.strategies.items():
        if commands:
            lines.append(f"  strategy {name} runs:")
            lines.extend(f"    {command}" for command in commands)
        else:
            lines.append(f"  strategy {name} (a name only: no commands)")
    lines.append(f"  outcomes used in ranking: {info.attempts}")
    lines.extend(
        f"    {e.error_class}: {e.strategy} recovered {e.recovered}, failed {e.failed}"
        for e in info.evidence
    )
    return lines


def _list_sources(kb_url: str | None) -> None:
    with open_knowledge(kb_url, existing=True) as kb:
        sources = kb.sources()
    if not sources:
        click.echo("no import sources (aideploy learn import FILE records one)")
        return
    rows = [
        [
            s.name,
            "yes" if s.trusted else "NO (inert)",
            len(s.patterns),
            len(s.strategies),
            s.attempts,
            f"{s.imported_at:%Y-%m-%d %H:%M}",
        ]
        for s in sources
    ]
    headers = ["source", "trusted", "patterns", "strategies", "outcomes", "imported"]
    click.echo(tabulate(rows, headers=headers))


@click.command("trust")
@kb_option
@click.argument("source", required=False)
@click.option(
    "--revoke", is_flag=True, help="Stop trusting SOURCE: what it brought is inert again."
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--yes", is_flag=True, help="Apply without asking (for scripts).")
def trust_cmd(
    kb_url: str | None, source: str | None, revoke: bool, dry_run: bool, yes: bool
) -> None:
    """Trust the import SOURCE: its patterns, strategies and outcomes take part in ranking and
    --auto choices. Shows what would change first; no SOURCE lists the sources."""
    if source is None:
        if revoke or dry_run or yes:
            raise UsageError("--revoke, --dry-run and --yes need a SOURCE")
        _list_sources(kb_url)
        return
    with open_knowledge(kb_url, existing=True) as kb:
        info = kb.source(source)
        if info is None:
            kb.set_trust(source, not revoke)  # raises: no such source (and says what it is)
            return
        click.echo("\n".join(_describe_source(info, revoke=revoke)))
        if info.trusted is not revoke:
            click.echo(f"source {source} is {'untrusted' if revoke else 'trusted'} already")
            return
        if dry_run:
            click.echo("dry run: nothing changed")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "confirm with --yes (or preview with --dry-run); nothing was changed"
                )
            question = f"{'Revoke' if revoke else 'Trust'} source {source}?"
            if not click.confirm(question, default=False):
                raise UsageError("not confirmed; nothing was changed")
        kb.set_trust(source, not revoke)
    action = "untrust" if revoke else "trust"
    audit.try_record(action, result="ok", target=kb.url, details={"source": source})
    click.echo(f"source {source} is now {'untrusted' if revoke else 'trusted'}")
