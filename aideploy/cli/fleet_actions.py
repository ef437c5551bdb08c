"""What ``deploy --inventory``, ``resume RUN``, ``status RUN`` and ``rollback RUN`` do."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from aideploy.cli.context import current_config
from aideploy.cli.fleet_progress import FleetProgress, summary
from aideploy.cli.options import settings
from aideploy.cli.progress import say
from aideploy.core.errors import AideployError, FleetFailed, RolloutStopped, UsageError
from aideploy.engine.fleet_state import RunState, RunStatus
from aideploy.engine.state import DeploymentState
from aideploy.services import fleet
from aideploy.services import rollback as rollback_service
from aideploy.services.inventory import load_inventory, select_hosts
from aideploy.services.target import Target


def selected_hosts(
    inventory_file: str, group: str | None, limit: str | None
) -> tuple[Any, list[str]]:
    """The inventory and the hosts ``--group`` and ``--limit`` select (every host without)."""
    inventory = load_inventory(Path(inventory_file))
    hosts = list(inventory.hosts)
    if group is not None:
        if group != "all" and group not in inventory.groups:
            known = ", ".join(sorted(inventory.groups))
            raise UsageError(f"--group {group!r}: no such group (groups: {known})")
        hosts = inventory.group_hosts(group)
    if limit is not None:
        limited = set(select_hosts(inventory, limit))
        hosts = [h for h in hosts if h in limited]
        if not hosts:
            raise UsageError(f"--group {group} --limit {limit}: selects no host")
    return inventory, hosts


def run_fleet_deploy(
    *,
    inventory_file: str,
    group: str | None,
    limit: str | None,
    rollout: fleet.Rollout,
    plan_spec: str,
    env: dict[str, str],
    kb: str | None,
    mode: str,
    secret_env: tuple[str, ...],
    accept_new_host_key: bool,
) -> None:
    config = current_config()
    inventory, hosts = selected_hosts(inventory_file, group, limit)
    request = fleet.FleetRequest(
        plan_spec=plan_spec,
        config=config,
        rollout=rollout,
        env=env,
        kb=kb,
        mode=mode,
        secret_env=secret_env,
    )
    # the numbers are checked before anything is saved
    fleet.amount(rollout.batch, len(hosts), "--batch", minimum=1)
    fleet.amount(rollout.max_fail, len(hosts), "--max-fail", minimum=0)
    run = fleet.new_run(
        request,
        inventory,
        hosts,
        accept_new_host_key=accept_new_host_key,
        selection={
            "inventory": str(Path(inventory_file).absolute()),
            "group": group,
            "limit": limit,
        },
    )
    run.save()
    _go(run, request)


def _go(run: RunState, request: fleet.FleetRequest) -> None:
    say(f"Run {run.run_id}: plan {run.plan} -> {len(run.hosts)} hosts")
    with FleetProgress(run, settings().verbosity) as progress:
        final = fleet.run_fleet(run, request, progress)
    summary(final)
    if final.status is RunStatus.STOPPED:
        say(f"Resume with: aideploy resume {final.run_id}", err=True)
        raise SystemExit(RolloutStopped.exit_code)
    if final.status is RunStatus.FAILED:
        say(f"Resume with: aideploy resume {final.run_id}", err=True)
        raise SystemExit(FleetFailed.exit_code)


def resume_run(run_id: str, kb: str | None, given: Mapping[str, str] | None = None) -> None:
    run = RunState.load(run_id)
    if run.status is RunStatus.COMPLETED:
        say(f"Run {run_id} already completed; nothing to resume.")
        return
    fleet.check_not_running(run)
    request = fleet.request_of(run, current_config(), kb, given)
    left = [h.name for h in run.hosts if h.result.value != "ok"]
    say(f"Resuming run {run_id}: {len(left)} of {len(run.hosts)} hosts ({', '.join(left)})")
    _go(run, request)


def status_run(run_id: str, as_json: bool) -> None:
    run = RunState.load(run_id)
    if as_json:
        click.echo(run.path.read_text(encoding="utf-8"), nl=False)
        return
    click.echo(f"run {run.run_id}: {run.status.value}")
    opts = run.options
    click.echo(
        f"  plan {run.plan}, {len(run.hosts)} hosts, forks {opts.get('forks')}, "
        f"batch {opts.get('batch') or 'all'}, max-fail {opts.get('max_fail') or 0}"
    )
    click.echo(f"  started {run.start_time}, ended {run.end_time or '-'}")
    if run.reason:
        click.echo(f"  reason: {run.reason}")
    for host in run.hosts:
        step = f"{host.steps_done}/{host.steps_total}" if host.steps_total else "-"
        line = f"  - {host.name}: {host.result.value} (steps {step}, deployment "
        line += f"{host.deployment_id or '-'})"
        if host.reason:
            line += f": {host.reason}"
        click.echo(line)


def host_deployment(run_id: str, host: str) -> str:
    """The deployment id of ``host`` in run ``run_id``."""
    run = RunState.load(run_id)
    entry = run.host(host)
    if entry.deployment_id is None:
        raise UsageError(f"host {host} of run {run_id} has not started; it has no log")
    DeploymentState.load(entry.deployment_id)  # a clear error if its state is gone
    return entry.deployment_id


def rollback_run(run_id: str, to: str | None, with_database: bool, list_only: bool) -> None:
    """Roll back every host of a run that has deployed, one after the other."""
    run = RunState.load(run_id)
    config = current_config()
    failed = 0
    for host in run.hosts:
        if host.deployment_id is None:
            click.echo(f"{host.name}: not deployed by this run, left as it is")
            continue
        target = Target.from_state(host.target)
        try:
            if list_only:
                for release in rollback_service.releases(config, target, host.env):
                    click.echo(f"{host.name}: {release.name} {release.commit}")
                continue
            result = rollback_service.rollback(
                config, target, host.env, to=to, with_database=with_database
            )
            text = result.stdout.strip().splitlines()
            click.echo(f"{host.name}: {text[-1] if text else 'rolled back'}")
        except AideployError as exc:  # one host's failure does not stop the others
            failed += 1
            click.echo(f"{host.name}: rollback failed: {exc}", err=True)
    if failed:
        raise FleetFailed(f"rollback of run {run_id}: {failed} host(s) failed")
