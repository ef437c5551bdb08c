"""The ``aideploy learn`` command group: the knowledge base, the ranker, reports.

Its commands live in :mod:`aideploy.cli.learn_store`, :mod:`aideploy.cli.learn_ranker` and
:mod:`aideploy.cli.learn_html`, imported the first time one is looked up.
"""

from __future__ import annotations

import click

from aideploy.cli.lazy import LazyCommand, LazyGroup

COMMANDS = {
    "report": LazyCommand("aideploy.cli.learn_store:report_cmd"),
    "signatures": LazyCommand("aideploy.cli.learn_store:signatures_cmd"),
    "strategies": LazyCommand("aideploy.cli.learn_store:strategies_cmd"),
    "export": LazyCommand("aideploy.cli.learn_store:export_cmd"),
    "import": LazyCommand("aideploy.cli.learn_store:import_cmd"),
    "trust": LazyCommand("aideploy.cli.learn_store:trust_cmd"),
    "classify": LazyCommand("aideploy.cli.learn_ranker:classify"),
    "explain": LazyCommand("aideploy.cli.learn_ranker:explain"),
    "patterns": LazyCommand("aideploy.cli.learn_ranker:patterns"),
    "report-html": LazyCommand("aideploy.cli.learn_html:report_html_cmd"),
}


@click.group("learn", cls=LazyGroup, lazy=COMMANDS)
def learn() -> None:
    """The knowledge base: what failed, what fixed it, and what to try next."""
