"""``aideploy deploy | resume | rollback``: run a plan, continue one, go back a release.

This module only declares the commands (their options and help), so ``--help`` is quick; what
they do is in :mod:`aideploy.cli.deploy_actions`, imported when one runs.
"""

from __future__ import annotations

from typing import Any

import click

from aideploy.cli.options import target_options


@click.command()
@target_options()
@click.option("--domain", help="Domain the app is served on.")
@click.option(
    "--plan",
    "plan_spec",
    default="example",
    show_default=True,
    help="Built-in plan name, module:attribute, or a .toml plan file.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Plan variable (passed to commands as an environment variable).",
)
@click.option(
    "--secret-env",
    "secret_env",
    multiple=True,
    metavar="NAME",
    help="Plan variable whose value is read from this environment variable at run "
    "(and resume) time; it is masked in output and never stored.",
)
@click.option("--interactive", is_flag=True, help="Ask about risky recoveries and prompts.")
@click.option("--auto", is_flag=True, help="Never ask; high-risk recoveries need auto_approve.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Same as --check (with --offline: list the plan's commands without connecting).",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Connect and say, step by step, what a deploy would change (skip / change / "
    "unknown, with diffs of rendered files); change nothing.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="With --dry-run or --check: list each step's commands; do not connect.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --check or --dry-run: print the plan check as JSON (docs/json.md).",
)
@click.option(
    "--yes",
    "assume_yes",
    is_flag=True,
    help="Confirm a deploy to a protected profile without typing its name (for CI).",
)
@click.option(
    "--kb",
    metavar="PATH_OR_URL",
    envvar="AIDEPLOY_KB",
    help="Knowledge base (SQLite path or SQLAlchemy URL).",
)
@click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(0, 86400),
    metavar="SECONDS",
    help="If the plan's deploy lock is held by another deployment, wait up to SECONDS for it "
    "(default: fail at once, exit code 6).",
)
@click.option("--resume", "resume_flag", is_flag=True, help="Resume --deployment-id.")
@click.option("--deployment-id", help="With --resume: the deployment to continue.")
@click.option(
    "-i",
    "--inventory",
    "inventory_file",
    metavar="FILE",
    help="Deploy to the hosts of this inventory (aideploy TOML, Ansible INI or YAML), as one run.",
)
@click.option("--group", help="With --inventory: only the hosts of this group.")
@click.option(
    "--limit",
    metavar="PATTERN",
    help="With --inventory: only the hosts the pattern selects (names, globs, !exclude, &and).",
)
@click.option(
    "--forks",
    type=click.IntRange(1, 500),
    default=10,
    show_default=True,
    help="With --inventory: hosts deployed at once.",
)
@click.option(
    "--batch",
    metavar="N|P%",
    help="With --inventory: rolling batches of N hosts (or P% of them); every host of a batch "
    "must deploy and pass the plan's health check before the next batch starts.",
)
@click.option(
    "--max-fail",
    metavar="N|P%",
    help="With --inventory: hosts that may fail before the rollout stops (default 0).",
)
def deploy(**options: Any) -> None:
    """Run a deployment plan against a server (or this machine with --local)."""
    from aideploy.cli import deploy_actions  # its work, loaded when it runs

    deploy_actions.run_deploy(**options)


@click.command()
@click.argument("deployment_id")
@click.option("--kb", metavar="PATH_OR_URL", envvar="AIDEPLOY_KB", help="Knowledge base.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Plan variable to give again or correct (a secret the deployment was started with is "
    "kept for it; one it lacks must be given here).",
)
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="Restart at this step (by name) instead of the first unfinished one.",
)
def resume(**options: Any) -> None:
    """Continue a deployment from its first unfinished step (or a run's unfinished hosts).

    DEPLOYMENT_ID is a deployment id, or a fleet run id (run-...): then only the hosts of the
    run that are not ok are deployed again, each from where it stopped."""
    from aideploy.cli import deploy_actions  # its work, loaded when it runs

    deploy_actions.run_resume(**options)


@click.command()
@target_options()
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Stack plan variable (APP_NAME, APP_ROOT, DB_PORT...), as given to deploy.",
)
@click.option(
    "--to",
    "to",
    metavar="RELEASE",
    help="Release to switch to (default: the previous verified one).",
)
@click.option(
    "--with-database",
    is_flag=True,
    help="Also restore the database dump taken before the live release migrated.",
)
@click.option("--list", "list_only", is_flag=True, help="List the releases; change nothing.")
@click.argument("run_id", required=False, metavar="[RUN]")
def rollback(**options: Any) -> None:
    """Switch the stack app back to an earlier release and restart it.

    With RUN (a fleet run id), every host that run deployed is rolled back."""

    from aideploy.cli import deploy_actions  # its work, loaded when it runs

    deploy_actions.run_rollback(**options)
