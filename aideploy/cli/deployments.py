"""``aideploy status | list | logs``: what the deployments on this machine did."""

from __future__ import annotations

import json
import time

import click

from aideploy.core import paths
from aideploy.core.errors import (
    StateError,
    UsageError,
)
from aideploy.engine.fleet_state import is_run_id
from aideploy.engine.state import DeploymentState, DeploymentStatus, list_states


@click.command()
@click.argument("deployment_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the raw state as JSON.")
def status(deployment_id: str | None, as_json: bool) -> None:
    """Show one deployment or fleet run (default: the newest deployment).

    With a run id (run-...), each host of the run is shown: result, steps, deployment."""
    if deployment_id is not None and is_run_id(deployment_id):
        from aideploy.cli import fleet_actions  # its work, loaded when it runs

        fleet_actions.status_run(deployment_id, as_json)
        return
    state = _state_or_newest(deployment_id)
    if as_json:
        click.echo(state.path.read_text(encoding="utf-8"), nl=False)
        return
    click.echo(f"deployment {state.deployment_id}: {state.status.value}")
    click.echo(
        f"  plan {state.plan}, step {state.current_step}/{state.total_steps}, "
        f"errors {state.error_count}"
    )
    click.echo(f"  started {state.start_time}, ended {state.end_time or '-'}")
    if state.reason:
        click.echo(f"  reason: {state.reason}")
    for step in state.steps:
        extra = f" (recovered by {', '.join(step.recoveries)})" if step.recoveries else ""
        click.echo(f"  - {step.name}: {step.status.value}{extra}")


def summary(state: DeploymentState) -> dict[str, object]:
    """One deployment in ``list --json`` (docs/json.md): stable keys, null when unknown."""
    return {
        "id": state.deployment_id,
        "plan": state.plan,
        "status": state.status.value,
        "current_step": state.current_step,
        "total_steps": state.total_steps,
        "errors": state.error_count,
        "host": state.server_info.get("hostname"),
        "profile": state.profile,
        "started": state.start_time,
        "ended": state.end_time,
        "reason": state.reason,
    }


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON (docs/json.md).")
def list_cmd(as_json: bool) -> None:
    """List deployments, newest first."""
    from tabulate import tabulate

    if as_json:
        click.echo(json.dumps([summary(s) for s in list_states()], indent=2))
        return

    rows = [
        (
            s.deployment_id,
            s.plan,
            s.status.value,
            f"{s.current_step}/{s.total_steps}",
            s.error_count,
            s.server_info.get("hostname"),
            s.start_time,
        )
        for s in list_states()
    ]
    if not rows:
        click.echo("no deployments yet")
        return
    click.echo(
        tabulate(rows, headers=["id", "plan", "status", "step", "errors", "host", "started"])
    )


def _state_or_newest(deployment_id: str | None) -> DeploymentState:
    if deployment_id is not None:
        return DeploymentState.load(deployment_id)
    states = list_states()
    if not states:
        raise StateError("no deployments yet")
    return states[0]


@click.command()
@click.argument("deployment_id", required=False)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing new lines until the deployment completes, fails or pauses.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON lines as they are.")
@click.option(
    "--host", metavar="HOST", help="With a fleet run id: the log of this host's deployment."
)
def logs(deployment_id: str | None, follow: bool, as_json: bool, host: str | None) -> None:
    """Show a deployment's log (default: the newest deployment's).

    With a fleet run id (run-...), --host HOST names which host's log."""
    if deployment_id is not None and is_run_id(deployment_id):
        if host is None:
            raise UsageError(f"{deployment_id} is a fleet run: name the host with --host HOST")
        from aideploy.cli import fleet_actions  # its work, loaded when it runs

        deployment_id = fleet_actions.host_deployment(deployment_id, host)
    elif host is not None:
        raise UsageError("--host needs a fleet run id (run-...)")
    deployment_id = _state_or_newest(deployment_id).deployment_id  # a clear error if unknown
    path = paths.logs_dir() / f"{deployment_id}.jsonl"
    if not path.exists():
        raise StateError(f"no log for deployment {deployment_id}")
    ended = False
    with path.open(encoding="utf-8", errors="replace") as handle:
        while True:
            start = handle.tell()
            line = handle.readline()
            if follow and not ended and not line.endswith("\n"):
                handle.seek(start)  # nothing new, or a line still being written
                # once the deployment has ended, read what it wrote last, then stop
                ended = DeploymentState.load(deployment_id).status in _ENDED
                time.sleep(0.5)
                continue
            if not line:
                return
            click.echo(line.rstrip("\n") if as_json else _log_line(line))


_ENDED = (
    DeploymentStatus.COMPLETED,
    DeploymentStatus.FAILED,
    DeploymentStatus.PAUSED,
    DeploymentStatus.ABANDONED,
)


def _log_line(line: str) -> str:
    """One JSON log event as a readable line; a line that is not one is shown as it is."""
    try:
        event = json.loads(line)
        return (
            f"{event['time']} {event['level']:<7} [{event.get('step') or '-'}] {event['message']}"
        )
    except (ValueError, TypeError, KeyError):
        return line.rstrip("\n")
