"""``aideploy inventory list | check``: the hosts of an inventory, and whether they answer."""

from __future__ import annotations

from typing import Any

import click

_INVENTORY = click.option(
    "-i",
    "--inventory",
    "inventory_file",
    required=True,
    metavar="FILE",
    envvar="AIDEPLOY_INVENTORY",
    help="Inventory: aideploy's TOML format, or an Ansible INI or YAML inventory.",
)
_GROUP = click.option("--group", help="Only the hosts of this group.")
_LIMIT = click.option(
    "--limit", metavar="PATTERN", help="Only the hosts the pattern selects (web*,!web03,&eu)."
)


@click.group("inventory")
def inventory_group() -> None:
    """Read an inventory: list its hosts, check that they answer."""


@inventory_group.command("list")
@_INVENTORY
@_GROUP
@_LIMIT
@click.option("--json", "as_json", is_flag=True, help="Hosts, groups and variables as JSON.")
def list_hosts(**options: Any) -> None:
    """List the hosts: address, port, user, groups."""
    from aideploy.cli import inventory_actions  # its work, loaded when it runs

    inventory_actions.list_hosts(**options)


@inventory_group.command("check")
@_INVENTORY
@_GROUP
@_LIMIT
@click.option(
    "--forks", type=click.IntRange(1, 500), default=10, show_default=True, help="Hosts at once."
)
@click.option(
    "--accept-new-host-key",
    is_flag=True,
    help="Trust and record the host key of a server seen for the first time.",
)
@click.option("--json", "as_json", is_flag=True, help="The results as JSON.")
def check(**options: Any) -> None:
    """Connect to every host in parallel: reachability, host key, OS, latency."""
    from aideploy.cli import inventory_actions  # its work, loaded when it runs

    inventory_actions.check(**options)
