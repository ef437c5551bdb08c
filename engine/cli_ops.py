"""Operator commands: ``aideploy audit verify|show``, ``aideploy metrics`` and ``aideploy init``.

Thin click commands over :mod:`audit`, :mod:`metrics` and :mod:`wizard`; library errors
(AideployError) propagate to the CLI's one error boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from aideploy.engine import audit

# -- audit -------------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The append-only, hash-chained audit log of deployments, rollbacks, imports..."""


@audit_group.command("verify")
@click.option(
    "--file", "file", type=click.Path(dir_okay=False), help="Audit log (default: the one in use)."
)
@click.option(
    "--head",
    metavar="HASH",
    help="A head hash printed earlier: also detect that newer entries were cut off.",
)
@click.pass_context
def audit_verify(ctx: click.Context, file: str | None, head: str | None) -> None:
    """Check the hash chain; exit 1 naming the first broken line."""
    result = audit.verify(Path(file) if file else None, head=head)
    if not result.ok:
        click.echo(
            f"audit log broken at line {result.broken_line}: {result.problem} "
            f"({result.count} entries intact before it)",
            err=True,
        )
        ctx.exit(1)
    click.echo(f"{result.count} entries, chain intact (head {result.head})")


@audit_group.command("show")
@click.option("-n", "limit", type=click.IntRange(1), help="Only the last N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines.")
@click.option("--file", "file", type=click.Path(dir_okay=False), help="Audit log.")
def audit_show(limit: int | None, as_json: bool, file: str | None) -> None:
    """Show the audit log, oldest first."""
    rows = [entry for _, entry in audit.entries(Path(file) if file else None)]
    if limit:
        rows = rows[-limit:]
    if not rows:
        click.echo("no audit entries yet")
        return
    for entry in rows:
        if as_json:
            click.echo(json.dumps(entry, sort_keys=True))
            continue
        click.echo(
            f"{entry.get('seq', '?'):>5} {entry.get('time', '?')} {entry.get('user', '?')}"
            f" {entry.get('action', '?')} {entry.get('target') or '-'}"
            f" -> {entry.get('result', '?')}"
            + (f" [{entry['deployment_id']}]" if entry.get("deployment_id") else "")
        )
