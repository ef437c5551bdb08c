"""``aideploy unlock | abandon``: clear up after a deployment that will not finish."""

from __future__ import annotations

from typing import Any

import click

from aideploy.cli.context import current_config, parse_sets, secret_prompt
from aideploy.cli.options import target_options
from aideploy.services import locks as locks_service
from aideploy.services.target import resolve_target
from aideploy.steps.stack import lock


@click.command()
@target_options()
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Stack plan variable, as given to deploy (APP_NAME names the lock).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Remove the lock even while its holder's process is alive or cannot be checked.",
)
def unlock(target_opts: dict[str, Any], sets: tuple[str, ...], force: bool) -> None:
    """Remove the deploy lock a dead deployment left on the target."""
    config = current_config()
    target = resolve_target(config, **target_opts)
    holder = locks_service.unlock(
        config, target, parse_sets(sets), force=force, ask_secret=secret_prompt()
    )
    if holder is None:
        click.echo(f"no deploy lock on {target.describe()}")
        return
    click.echo(f"removed the deploy lock of {lock.describe(holder)} on {target.describe()}")


@click.command()
@click.argument("deployment_id")
@click.option(
    "--force", is_flag=True, help="Abandon it even while the process running it is alive."
)
def abandon(deployment_id: str, force: bool) -> None:
    """Give up a deployment for good and release the lock it held on its target."""
    done = locks_service.abandon(
        current_config(), deployment_id, force=force, ask_secret=secret_prompt()
    )
    click.echo(f"deployment {deployment_id}: abandoned; {'; '.join(done.notes)}")
