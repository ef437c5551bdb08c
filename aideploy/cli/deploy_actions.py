"""``aideploy deploy | resume | rollback``: run a plan, continue one, go back a release."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from aideploy.cli import fleet_actions
from aideploy.cli.context import current_config, parse_sets, secret_prompt
from aideploy.cli.options import settings
from aideploy.cli.progress import ConsoleProgress, say
from aideploy.core.errors import (
    LockError,
    StepFailed,
    UsageError,
)
from aideploy.core.redact import MASK, is_secret_key, redact
from aideploy.core.schema import check_domain
from aideploy.engine import kept_secrets
from aideploy.engine.fleet_state import is_run_id
from aideploy.engine.plan import require_variables
from aideploy.engine.preview import Verdict
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepStatus
from aideploy.services import check as check_service
from aideploy.services import deploy as deploy_service
from aideploy.services import rollback as rollback_service
from aideploy.services.config import Config
from aideploy.services.deploy import Operator
from aideploy.services.fleet import Rollout
from aideploy.services.target import Target, resolve_target


def _operator(mode: str, progress: ConsoleProgress) -> Any:

    tty = sys.stdin.isatty()
    ask_terminal = secret_prompt()

    def approve(question: str) -> bool:
        if mode == "auto" or not tty:
            say(f"      not approved (no one to ask): {question}", fg="yellow")
            return False
        with progress.paused():
            return click.confirm(question, default=False)

    def ask_prompt(text: str) -> str | None:
        with progress.paused():
            click.echo(f"\n[command waits for input] {text}")
            answer = click.prompt(
                "answer (empty: leave it waiting)", default="", show_default=False
            )
        return str(answer) or None

    def ask_secret(prompt: str) -> str:
        assert ask_terminal is not None
        with progress.paused():
            return ask_terminal(prompt)

    return Operator(
        approve=approve,
        ask_secret=ask_secret if ask_terminal is not None else None,
        ask_prompt=ask_prompt if mode == "interactive" else None,
        on_line=progress.line,
        on_command=progress.on_command,
        progress=progress,
    )


def _finish(state: DeploymentState) -> None:
    if state.status is DeploymentStatus.COMPLETED:
        say(
            f"Deployment {state.deployment_id} completed ({state.total_steps} steps, "
            f"{state.error_count} errors recovered).",
            fg="green",
        )


def _run(request: Any, state: DeploymentState, mode: str) -> None:

    progress = ConsoleProgress(settings().verbosity)
    if progress.verbosity >= 0:
        say(f"Deployment {state.deployment_id}: plan {state.plan} -> {request.target.describe()}")
    try:
        with progress:
            final = deploy_service.run(request, state, _operator(mode, progress))
    except StepFailed as exc:
        say(
            f"Deployment {state.deployment_id} {state.status.value.upper()}: {exc}",
            fg="red",
            err=True,
        )
        say(f"Resume with: aideploy resume {state.deployment_id}", err=True)
        raise SystemExit(exc.exit_code) from None
    _finish(final)


def run_deploy(
    target_opts: dict[str, Any],
    domain: str | None,
    plan_spec: str,
    sets: tuple[str, ...],
    secret_env: tuple[str, ...],
    interactive: bool,
    auto: bool,
    dry_run: bool,
    check_only: bool,
    offline: bool,
    as_json: bool,
    assume_yes: bool,
    kb: str | None,
    lock_wait: float | None,
    resume_flag: bool,
    deployment_id: str | None,
    inventory_file: str | None = None,
    group: str | None = None,
    limit: str | None = None,
    forks: int = 10,
    batch: str | None = None,
    max_fail: str | None = None,
) -> None:
    """What ``aideploy deploy`` does."""
    if inventory_file is None and (group or limit or batch or max_fail):
        raise UsageError("--group, --limit, --batch and --max-fail need --inventory FILE")
    if resume_flag:
        if not deployment_id:
            raise UsageError("--resume needs --deployment-id ID")
        _resume(deployment_id, kb)
        return
    if interactive and auto:
        raise UsageError("--interactive and --auto cannot be used together")

    if inventory_file is not None:
        _fleet_deploy(
            target_opts,
            inventory_file,
            group,
            limit,
            forks,
            batch,
            max_fail,
            plan_spec,
            sets,
            secret_env,
            interactive,
            dry_run or check_only,
            kb,
            lock_wait,
            "interactive" if interactive else ("auto" if auto else "default"),
            domain,
        )
        return
    config = current_config()
    target = resolve_target(config, domain=domain, **target_opts)
    profile = target_opts.get("profile")
    env = parse_sets(sets)
    if lock_wait is not None:
        env["LOCK_WAIT"] = f"{lock_wait:g}"
    if target.domain:
        env.setdefault("DOMAIN", target.domain)
    mode = "interactive" if interactive else ("auto" if auto else "default")
    if profile:
        _guard_protected(config, profile, auto, assume_yes)
    request = deploy_service.DeployRequest(
        plan_spec=plan_spec,
        target=target,
        config=config,
        env=env,
        kb=kb,
        mode=mode,
        secret_env=tuple(secret_env),
    )
    previewing = dry_run or check_only
    if (offline or as_json) and not previewing:
        raise UsageError("--offline and --json go with --check or --dry-run")
    if offline and as_json:
        raise UsageError("--json shows a plan check: it cannot be used with --offline")
    if previewing and offline:
        plan = deploy_service.prepare_plan(plan_spec, env, "<deployment-id>")
        require_variables(plan)
        _print_dry_run(plan, target)
        return
    if previewing:
        _print_check(check_service.check(request, secret_prompt()), as_json)
        return
    plan = deploy_service.prepare_plan(plan_spec, env, "dry")  # validates the plan before any state
    require_variables(plan)  # every variable a step needs is set, before connecting
    request.secrets()  # and every --secret-env is set
    state = deploy_service.new_state(request, plan)
    state.save()
    _run(request, state, mode)


def _print_check(found: check_service.PlanCheck, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    click.echo(f"Check: plan {found.plan} -> {found.target} (nothing was changed)")
    width = max(len(step.name) for step in found.steps)
    for index, step in enumerate(found.steps, 1):
        verdict = step.preview.verdict.value
        click.echo(
            f"[{index:>2}/{len(found.steps)}] {step.name:<{width}}  {verdict:<7}  "
            f"{step.preview.reason}"
        )
        for change in step.preview.files:
            for line in change.diff.splitlines():
                click.echo(f"        {line}")
    summary = ", ".join(f"{found.count(v)} {v.value}" for v in Verdict)
    click.echo(f"{summary}")


def _fleet_deploy(
    target_opts: dict[str, Any],
    inventory_file: str,
    group: str | None,
    limit: str | None,
    forks: int,
    batch: str | None,
    max_fail: str | None,
    plan_spec: str,
    sets: tuple[str, ...],
    secret_env: tuple[str, ...],
    interactive: bool,
    dry_run: bool,
    kb: str | None,
    lock_wait: float | None,
    mode: str,
    domain: str | None,
) -> None:
    """``deploy --inventory``: one run over the selected hosts."""
    given = [k for k, v in target_opts.items() if v and k != "accept_new_host_key"]
    if given:
        raise UsageError(
            f"--inventory names the hosts: --{given[0].replace('_', '-')} cannot be used with it"
        )
    if interactive:
        raise UsageError("--interactive cannot be used with --inventory (hosts run in parallel)")
    if dry_run:
        raise UsageError("--dry-run and --check cannot be used with --inventory")
    env = parse_sets(sets)
    if lock_wait is not None:
        env["LOCK_WAIT"] = f"{lock_wait:g}"
    if domain:
        problem = check_domain(domain)
        if problem:
            raise UsageError(f"--domain: {problem}")
        env.setdefault("DOMAIN", domain)
    fleet_actions.run_fleet_deploy(
        inventory_file=inventory_file,
        group=group,
        limit=limit,
        rollout=Rollout(forks=forks, batch=batch, max_fail=max_fail),
        plan_spec=plan_spec,
        env=env,
        kb=kb,
        mode=mode,
        secret_env=tuple(secret_env),
        accept_new_host_key=bool(target_opts.get("accept_new_host_key")),
    )


def _guard_protected(config: Config, profile: str, auto: bool, assume_yes: bool = False) -> None:
    prof = config.profile(profile)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    if prof.allowed_users and user not in prof.allowed_users:
        raise UsageError(f"profile {profile!r}: local user {user!r} may not deploy to it")
    if prof.protected and not assume_yes:
        if auto or not sys.stdin.isatty():
            raise UsageError(
                f"profile {profile!r} is protected: run interactively to confirm, or pass --yes"
            )
        typed = click.prompt(f"Profile {profile!r} is protected. Type its name to deploy")
        if typed != profile:
            raise UsageError("confirmation did not match; nothing was deployed")


def _print_dry_run(plan: Any, target: Target) -> None:
    click.echo(f"Dry run: plan {plan.name} -> {target.describe()} (nothing is run)")
    for key, value in sorted(plan.env.items()):
        click.echo(f"  env {key}={MASK if is_secret_key(key) else redact(value)}")
    for index, step in enumerate(plan.steps, 1):
        click.echo(f"[{index}/{len(plan.steps)}] {step.name}: {step.description}")
        if isinstance(step.check, str):
            click.echo(f"    skip if: {step.check}")
        for command in step.commands:
            click.echo(f"    run: {command}")
        if step.work is not None:
            click.echo(f"    run: <python {getattr(step.work, '__name__', 'work')}>")
        if isinstance(step.verify, str):
            click.echo(f"    verify: {step.verify}")


def _resume(
    deployment_id: str,
    kb: str | None,
    sets: tuple[str, ...] = (),
    from_step: str | None = None,
) -> None:

    state = DeploymentState.load(deployment_id)
    if state.status is DeploymentStatus.COMPLETED and from_step is None:
        say(f"Deployment {deployment_id} already completed; nothing to resume.")
        return
    if state.status is DeploymentStatus.ABANDONED:
        raise UsageError(f"deployment {deployment_id} was abandoned; it cannot be resumed")
    if state.owner_alive():
        raise LockError(
            f"deployment {deployment_id} is still running (pid {state.owner.get('pid')})"
        )
    opts = state.options
    target = Target.from_state(opts.get("target", {}))
    request = deploy_service.DeployRequest(
        plan_spec=str(opts.get("plan_spec", state.plan)),
        target=target,
        config=current_config(),
        env=_resumed_env(deployment_id, dict(opts.get("env", {})), parse_sets(sets)),
        kb=kb if kb is not None else opts.get("kb"),
        mode=str(opts.get("mode", "default")),
        secret_env=tuple(opts.get("secret_env", ())),
    )
    state.options["env"] = dict(request.env)  # --set changes kept (secrets masked on save)
    if from_step is not None:
        _restart_from(state, from_step)
    index = state.first_unfinished()
    say(f"Resuming {deployment_id} at step {index + 1}/{state.total_steps}")
    _run(request, state, request.mode)


def _resumed_env(
    deployment_id: str, stored: dict[str, str], given: dict[str, str]
) -> dict[str, str]:
    """The variables a resumed deployment runs with: the state's, the secrets kept beside it,
    then ``--set``. A value the state holds masked and nothing gives back is an error."""
    env = {**stored, **kept_secrets.load(deployment_id), **given}
    missing = sorted(k for k, v in env.items() if MASK in v and MASK in stored.get(k, ""))
    if missing:
        names = ", ".join(missing)
        raise UsageError(
            f"deployment {deployment_id} needs the secret value of {names}, which is not kept: "
            f"give it again with --set KEY=VALUE, {missing[0]} as KEY"  # NAME=VALUE is masked
        )
    return env


def _restart_from(state: DeploymentState, name: str) -> None:
    """Make step ``name`` and every step after it pending again."""
    names = [step.name for step in state.steps]
    if name not in names:
        raise UsageError(
            f"deployment {state.deployment_id} has no step {name!r} (steps: {', '.join(names)})"
        )
    for step in state.steps[names.index(name) :]:
        step.status = StepStatus.PENDING
    if state.status is DeploymentStatus.COMPLETED:
        state.status = DeploymentStatus.FAILED
        state.reason = f"restarted at step {name}"


def run_resume(
    deployment_id: str, kb: str | None, sets: tuple[str, ...] = (), from_step: str | None = None
) -> None:
    """What ``aideploy resume`` does."""
    if is_run_id(deployment_id):
        if from_step:
            raise UsageError(
                f"{deployment_id} is a fleet run: --from applies to one host's deployment "
                "(aideploy status RUN lists them)"
            )
        fleet_actions.resume_run(deployment_id, kb, parse_sets(sets))
        return
    _resume(deployment_id, kb, sets, from_step)


def run_rollback(
    target_opts: dict[str, Any],
    sets: tuple[str, ...],
    to: str | None,
    with_database: bool,
    list_only: bool,
    run_id: str | None = None,
) -> None:
    """What ``aideploy rollback`` does."""
    if run_id is not None:
        given = [k for k, v in target_opts.items() if v]
        if given or sets:
            raise UsageError("rollback RUN takes its hosts and variables from the run")
        fleet_actions.rollback_run(run_id, to, with_database, list_only)
        return
    config = current_config()
    target = resolve_target(config, **target_opts)
    plan_vars = parse_sets(sets)
    if list_only:
        for release in rollback_service.releases(config, target, plan_vars, secret_prompt()):
            flags = ",".join(
                f for f, on in (("live", release.live), ("verified", release.verified)) if on
            )
            click.echo(f"{release.name}  {flags or '-'}  {release.commit}")
        return
    result = rollback_service.rollback(
        config, target, plan_vars, to=to, with_database=with_database, ask_secret=secret_prompt()
    )
    click.echo(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "rolled back")
