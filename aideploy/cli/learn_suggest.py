"""``aideploy learn suggest``: what would make deployments faster and steadier, with evidence.

The suggestions come from the knowledge base (step durations, recoveries, server checks) and the
deployment states on this machine (which steps ran again with unchanged variables); see
:mod:`aideploy.knowledge.suggest`. ``ai_features.optimization_suggestions: false`` turns them
off, here and in the HTML report.
"""

from __future__ import annotations

import json

import click

from aideploy.cli.context import current_config
from aideploy.engine.state import list_states
from aideploy.knowledge.store import KnowledgeBase
from aideploy.knowledge.suggest import MIN_EVIDENCE, Suggestion, suggest
from aideploy.services.compose import open_knowledge

#: the version of the ``learn suggest --json`` document (docs/commands/learn-suggest.md)
SCHEMA = 1


def optimisation_suggestions(
    kb: KnowledgeBase, min_evidence: int = MIN_EVIDENCE
) -> tuple[Suggestion, ...]:
    """The suggestions over ``kb`` and this machine's deployment states."""
    return suggest(kb, list_states(), min_evidence=min_evidence)


@click.command("suggest")
@click.option("--kb", "kb_url", metavar="PATH_OR_URL", default=None, help="Knowledge base.")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
@click.option(
    "--min-evidence",
    type=click.IntRange(1, 1000),
    default=MIN_EVIDENCE,
    show_default=True,
    help="Observations (runs, recoveries, deployments) a suggestion needs.",
)
def suggest_cmd(kb_url: str | None, as_json: bool, min_evidence: int) -> None:
    """Optimisation suggestions from the knowledge base and the deployment states: the slowest
    steps and their trend, steps that rerun with unchanged inputs, recoveries that keep recurring
    (and the change that prevents them), memory and disk warnings; each with its evidence."""
    enabled = current_config().ai_features.optimization_suggestions
    found: tuple[Suggestion, ...] = ()
    if enabled:
        with open_knowledge(kb_url, existing=True) as kb:
            found = optimisation_suggestions(kb, min_evidence)
    if as_json:
        document = {
            "schema": SCHEMA,
            "enabled": enabled,
            "suggestions": [s.to_json() for s in found],
        }
        click.echo(json.dumps(document, indent=2))
        return
    if not enabled:
        click.echo("optimisation suggestions are off (ai_features.optimization_suggestions)")
        return
    if not found:
        click.echo(f"no suggestions yet (each needs at least {min_evidence} observations)")
        return
    for index, item in enumerate(found, 1):
        click.echo(f"{index}. [{item.kind}] {item.subject}: {item.advice}")
        click.echo(f"   evidence: {item.evidence}")
