"""``aideploy learn report-html FILE``: the knowledge-base report as a self-contained HTML page.

The same page is written by ``aideploy learn report --html FILE``; both call
:func:`write_html_report` (matplotlib is imported only when a page is drawn).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from aideploy.cli.context import current_config
from aideploy.cli.learn_suggest import optimisation_suggestions
from aideploy.core.errors import UsageError
from aideploy.knowledge import html_report
from aideploy.knowledge.report import TOP_SIGNATURES
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services.compose import open_knowledge

KB_HELP = (
    "Knowledge base: a file path (SQLite) or a SQLAlchemy URL. Default: $AIDEPLOY_KB, then "
    "knowledge.db in the user data directory."
)


def write_html_report(
    kb: KnowledgeBase,
    path: str | Path,
    *,
    since: datetime | str | None = None,
    profile: str | None = None,
    host: str | None = None,
    top: int = TOP_SIGNATURES,
) -> Path:
    """Write the HTML report of ``kb`` to ``path``, with the optimisation suggestions when the
    configuration asks for them (``ai_features.optimization_suggestions``); returns the path.

    Raises UsageError when matplotlib is not installed.
    """
    suggestions = (
        optimisation_suggestions(kb)
        if current_config().ai_features.optimization_suggestions
        else None
    )
    try:
        return html_report.write_html_report(
            kb, path, since=since, profile=profile, host=host, top=top, suggestions=suggestions
        )
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the HTML report needs matplotlib: pip install matplotlib ({exc})"
        ) from None


@click.command("report-html")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--kb", "kb_url", metavar="PATH_OR_URL", default=None, help=KB_HELP)
@click.option("--since", metavar="DATE", help="Only what happened on or after DATE (YYYY-MM-DD).")
@click.option("--profile", help="Only deployments of this profile.")
@click.option("--host", help="Only deployments to this host.")
@click.option("--top", default=TOP_SIGNATURES, show_default=True, help="Signatures listed.")
def report_html_cmd(
    file: str,
    kb_url: str | None,
    since: str | None,
    profile: str | None,
    host: str | None,
    top: int,
) -> None:
    """Write the report to FILE as one self-contained HTML page with plots: success rate per
    strategy, first-try recovery rate per week (the learning curve), top error classes and
    deployment durations, then the report's tables. Images are embedded; it opens offline."""
    with open_knowledge(kb_url, existing=True) as kb:
        written = write_html_report(kb, file, since=since, profile=profile, host=host, top=top)
    click.echo(f"wrote {written}", err=True)


__all__ = ["report_html_cmd", "write_html_report"]
