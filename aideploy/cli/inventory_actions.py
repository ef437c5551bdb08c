"""What ``aideploy inventory list | check`` do."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from tabulate import tabulate

from aideploy.cli.context import current_config
from aideploy.cli.fleet_actions import selected_hosts
from aideploy.core.errors import ConnectError
from aideploy.core.redact import redact_obj
from aideploy.services.fleet import host_target
from aideploy.services.reachability import check_hosts


def list_hosts(inventory_file: str, group: str | None, limit: str | None, as_json: bool) -> None:
    inventory, hosts = selected_hosts(inventory_file, group, limit)
    rows = []
    for name in hosts:
        conn = inventory.connection(name)
        rows.append(
            {
                "host": name,
                "address": conn.hostname,
                "port": conn.port,
                "user": conn.user,
                "key_file": conn.key_file,
                "groups": [g for g in inventory.groups_of(name) if g != "all"],
                "vars": redact_obj(inventory.host_vars(name)),
            }
        )
    if as_json:
        click.echo(json.dumps({"source": inventory.source, "hosts": rows}, indent=2, default=str))
        return
    table = [
        (r["host"], r["address"], r["port"] or "-", r["user"] or "-", ",".join(r["groups"]))
        for r in rows
    ]
    click.echo(tabulate(table, headers=["host", "address", "port", "user", "groups"]))


def check(
    inventory_file: str,
    group: str | None,
    limit: str | None,
    forks: int,
    accept_new_host_key: bool,
    as_json: bool,
) -> None:
    """Exit 3 when a host cannot be reached or its host key is not trusted."""
    config = current_config()
    inventory, hosts = selected_hosts(inventory_file, group, limit)
    targets = {
        name: host_target(config, inventory, name, accept_new_host_key=accept_new_host_key)
        for name in hosts
    }
    results = check_hosts(targets, forks=forks)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        rows = [
            (
                r.host,
                r.address,
                "yes" if r.reachable else "NO",
                r.host_key,
                r.os or "-",
                f"{r.connect_ms:.0f} ms" if r.connect_ms is not None else "-",
                f"{r.command_ms:.0f} ms" if r.command_ms is not None else "-",
                r.error or "",
            )
            for r in results
        ]
        headers = ["host", "address", "reachable", "host key", "os", "connect", "command", "error"]
        click.echo(tabulate(rows, headers=headers))
    bad = [r.host for r in results if not r.reachable]
    if bad:
        raise ConnectError(f"{len(bad)} of {len(results)} host(s) not reachable: {', '.join(bad)}")
