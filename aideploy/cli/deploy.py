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
    """Continue a deployment from its first unfinished step."""
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
def rollback(**options: Any) -> None:
    """Switch the stack app back to an earlier release and restart it."""

    from aideploy.cli import deploy_actions  # its work, loaded when it runs

    deploy_actions.run_rollback(**options)
