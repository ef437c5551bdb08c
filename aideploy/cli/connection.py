"""``aideploy test-connection``: connect, measure, show the host key."""

from __future__ import annotations

import time
from typing import Any

import click

from aideploy.cli.context import current_config, secret_prompt
from aideploy.cli.options import target_options
from aideploy.core.errors import (
    AideployError,
)
from aideploy.engine.runner import Runner
from aideploy.services.compose import build_connector
from aideploy.services.target import resolve_target


@click.command("test-connection")
@target_options(local=False)
def test_connection(target_opts: dict[str, Any]) -> None:
    """Connect, run a trivial command, report latency and the host key fingerprint."""

    config = current_config()
    target = resolve_target(config, **target_opts)
    connector = build_connector(
        target,
        session=False,
        ask_secret=secret_prompt(),
    )
    started = time.monotonic()
    connector.connect()
    try:
        connected = time.monotonic()
        result = Runner(connector, timeout=30).run("uname -srm && id -un")
        done = time.monotonic()
    finally:
        connector.close()
    if not result.ok:
        raise AideployError(f"connected, but the test command failed: {result.tail(2)}")
    click.echo(f"connected to {target.describe()}")
    fingerprint = getattr(connector, "host_key_fingerprint", None)
    if fingerprint:
        click.echo(f"host key: {fingerprint}")
    click.echo(f"system: {result.stdout.splitlines()[0] if result.stdout else '?'}")
    click.echo(
        f"connect: {(connected - started) * 1000:.0f} ms, "
        f"command round trip: {(done - connected) * 1000:.0f} ms"
    )
