"""The ``aideploy learn`` command group: the knowledge base, the ranker, reports.

Its commands live in :mod:`aideploy.cli.learn_store`, :mod:`aideploy.cli.learn_ranker` and
:mod:`aideploy.cli.learn_html`, imported the first time one runs (``learn --help`` lists them
from their declared help).
"""

from __future__ import annotations

import click

from aideploy.cli.lazy import LazyCommand, LazyGroup

COMMANDS = {
    "report": LazyCommand(
        "aideploy.cli.learn_store:report_cmd",
        "What the knowledge base has learned: deployments and success rate per week, the most frequent errors, per-strategy success and time to recovery, the best strategy per error class, and the first-try recovery rate per week (the learning curve).",
    ),
    "signatures": LazyCommand(
        "aideploy.cli.learn_store:signatures_cmd", "Known error signatures, most frequent first."
    ),
    "strategies": LazyCommand(
        "aideploy.cli.learn_store:strategies_cmd",
        "Strategies: their risk, statistics (attempts, weighted success rate, mean time to recovery), what they do and, for those stored in the KB, origin and whether they are trusted to run.",
    ),
    "export": LazyCommand(
        "aideploy.cli.learn_store:export_cmd",
        'Write the knowledge base to FILE as versioned JSON Lines ("-": standard output), with secrets and (by default) private host names and addresses removed.',
    ),
    "import": LazyCommand(
        "aideploy.cli.learn_store:import_cmd",
        "Import an export FILE: every line is checked first and a bad line rejects the whole file (exit 2, nothing imported); importing the same file again adds nothing.",
    ),
    "trust": LazyCommand(
        "aideploy.cli.learn_store:trust_cmd",
        "Trust the import SOURCE: its patterns, strategies and outcomes take part in ranking and --auto choices.",
    ),
    "classify": LazyCommand(
        "aideploy.cli.learn_ranker:classify",
        "Signature, error class scores and ranked strategies for each error text.",
    ),
    "explain": LazyCommand(
        "aideploy.cli.learn_ranker:explain",
        "Explain the ranking of one error text (FILE, or stdin with - / no argument).",
    ),
    "patterns": LazyCommand(
        "aideploy.cli.learn_ranker:patterns",
        "Custom error patterns (regex -> error class -> recovery strategy).",
    ),
    "suggest": LazyCommand(
        "aideploy.cli.learn_suggest:suggest_cmd",
        "Optimisation suggestions from the knowledge base and the deployment states: the slowest steps and their trend, steps that rerun with unchanged inputs, recoveries that keep recurring (and the change that prevents them), memory and disk warnings; each with its evidence.",
    ),
    "report-html": LazyCommand(
        "aideploy.cli.learn_html:report_html_cmd",
        "Write the report to FILE as one self-contained HTML page with plots: success rate per strategy, first-try recovery rate per week (the learning curve), top error classes and deployment durations, then the report's tables.",
    ),
}


@click.group("learn", cls=LazyGroup, lazy=COMMANDS)
def learn() -> None:
    """The knowledge base: what failed, what fixed it, and what to try next."""
