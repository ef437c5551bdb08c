"""A fleet run: one plan deployed to many hosts of an inventory under one run id.

Hosts are deployed ``forks`` at a time, in rolling batches (``batch``: a number of hosts or a
percentage of the run's hosts). After every batch comes the health gate: each host of the batch
must have deployed and passed the plan's health check, or it counts as failed; when more hosts
have failed than ``max_fail`` allows (default 0), the rollout stops and the hosts not yet started
stay pending. Each host keeps its own deployment state (resumable as a single deployment is); the
run's state links them. All hosts share one knowledge base and one ranker
(:mod:`.shared_learning`): a recovery one host learns is tried first on the next.

Resuming a run deploys only the hosts that are not ``ok``: a failed deployment continues from its
first unfinished step, a completed but unhealthy one is checked again, a pending one starts.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aideploy.core.errors import (
    AideployError,
    ConfigError,
    LockError,
    ManualInterventionRequired,
    UsageError,
)
from aideploy.core.process import pid_alive
from aideploy.core.redact import MASK
from aideploy.engine import kept_secrets, metrics, notify
from aideploy.engine.fleet_state import (
    FAILED_RESULTS,
    HostResult,
    HostRun,
    RunState,
    RunStatus,
    new_run_id,
)
from aideploy.engine.plan import Check, Plan, StepContext
from aideploy.engine.recovery import RecoveryAdvisor
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepStatus, now_iso
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services import compose
from aideploy.services import deploy as deploy_service
from aideploy.services.config import Config
from aideploy.services.host_lock import host_lock
from aideploy.services.inventory import Inventory
from aideploy.services.shared_learning import SharedLearning
from aideploy.services.target import Target, resolve_target

log = logging.getLogger("aideploy.fleet")

DEFAULT_FORKS = 10


class FleetDisplay(Protocol):
    """Where a run reports progress: per host (``host`` set) or for the run (``host`` empty)."""

    def __call__(self, host: str, event: str, **data: Any) -> None: ...


@dataclass(frozen=True)
class Rollout:
    forks: int = DEFAULT_FORKS
    batch: str | None = None  # "N" hosts or "P%" of the run's hosts; None: all at once
    max_fail: str | None = None  # "N" hosts or "P%"; None: 0 (any failure stops the rollout)


@dataclass(frozen=True)
class FleetRequest:
    plan_spec: str
    config: Config
    rollout: Rollout
    env: Mapping[str, str]
    kb: str | None = None
    mode: str = "default"
    secret_env: tuple[str, ...] = ()


def amount(text: str | None, total: int, option: str, *, minimum: int) -> int | None:
    """``N`` or ``P%`` of ``total`` as a number of hosts (a percentage of a batch rounds up, of
    failures allowed rounds down); None when ``text`` is None."""
    if text is None:
        return None
    value = text.strip()
    try:
        if value.endswith("%"):
            share = float(value[:-1])
            if not 0 <= share <= 100 or math.isnan(share):
                raise ValueError
            exact = total * share / 100
            count = math.ceil(exact) if minimum else math.floor(exact)
        else:
            count = int(value)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a number of hosts or a percentage") from None
    if count < minimum:
        raise UsageError(f"{option} {text!r}: must be at least {minimum}")
    return max(count, minimum)


def host_target(
    config: Config, inventory: Inventory, name: str, *, accept_new_host_key: bool = False
) -> Target:
    """Where inventory host ``name`` is reached: its address, port, user and key from the
    inventory, the rest as for ``--server`` (configuration, ``~/.ssh/config``, defaults)."""
    conn = inventory.connection(name)
    target = resolve_target(
        config,
        server=conn.hostname,
        port=conn.port,
        username=conn.user,
        key_file=conn.key_file,
        accept_new_host_key=accept_new_host_key,
    )
    return replace(target, profile=None)


def new_run(
    request: FleetRequest,
    inventory: Inventory,
    hosts: list[str],
    *,
    accept_new_host_key: bool = False,
    selection: Mapping[str, Any] | None = None,
) -> RunState:
    """The state of a new run over ``hosts`` (nothing is run); the plan is loaded once per host
    with that host's variables, so a bad plan or variable fails here."""
    for name in request.secret_env:  # every --secret-env is set before anything is saved
        if name not in os.environ:
            raise ConfigError(f"--secret-env {name} is not set in the environment")
    run_id = new_run_id()
    runs = []
    for name in hosts:
        target = host_target(
            request.config, inventory, name, accept_new_host_key=accept_new_host_key
        )
        env = {**inventory.plan_vars(name), **request.env}
        deploy_service.prepare_plan(request.plan_spec, env, "dry")
        groups = [g for g in inventory.groups_of(name) if g != "all"]
        runs.append(HostRun(name=name, target=target.to_state(), env=env, groups=groups))
    plan = deploy_service.prepare_plan(request.plan_spec, {}, "dry")
    run = RunState(run_id=run_id, plan=plan.name, status=RunStatus.RUNNING, hosts=runs)
    run.options = {
        "plan_spec": request.plan_spec,
        "env": dict(request.env),
        "kb": request.kb,
        "mode": request.mode,
        "secret_env": list(request.secret_env),
        "forks": request.rollout.forks,
        "batch": request.rollout.batch,
        "max_fail": request.rollout.max_fail,
        **dict(selection or {}),
    }
    return run


def request_of(
    run: RunState,
    config: Config,
    kb: str | None = None,
    given: Mapping[str, str] | None = None,
) -> FleetRequest:
    """The request a saved run was made with (to resume it). The secret values its state holds
    masked are put back into ``run`` from where they are kept; ``given`` (``resume RUN --set``)
    gives variables again or corrects them, for the run and every host left to deploy. A secret
    that is neither kept nor given, for a host left to deploy, is a :class:`UsageError`."""
    kept_secrets.load_run(run)
    if given:
        run.options["env"] = {**run.options.get("env", {}), **given}
        for host in run.hosts:
            if host.result is not HostResult.OK:
                host.env = {**host.env, **given}
    for host in run.hosts:
        missing = sorted(k for k, v in host.env.items() if MASK in v)
        if missing and host.result is not HostResult.OK:
            raise UsageError(
                f"run {run.run_id} needs the secret value of {', '.join(missing)} for host "
                f"{host.name}, which is not kept",
                # not NAME=VALUE: a secret name's value is masked wherever it is shown
                hint=f"give it again: aideploy resume {run.run_id} --set KEY=VALUE with "
                f"{missing[0]} as KEY",
            )
    opts = run.options
    return FleetRequest(
        plan_spec=str(opts.get("plan_spec", run.plan)),
        config=config,
        rollout=Rollout(
            forks=int(opts.get("forks", DEFAULT_FORKS)),
            batch=opts.get("batch"),
            max_fail=opts.get("max_fail"),
        ),
        env=dict(opts.get("env", {})),
        kb=kb if kb is not None else opts.get("kb"),
        mode=str(opts.get("mode", "default")),
        secret_env=tuple(opts.get("secret_env", ())),
    )


def check_not_running(run: RunState) -> None:
    """A :class:`~aideploy.core.errors.LockError` when another live process runs ``run``."""
    owner = run.options.get("owner") or {}
    pid = owner.get("pid")
    if (
        run.status is RunStatus.RUNNING
        and pid
        and owner.get("host") == socket.gethostname()
        and int(pid) != os.getpid()
        and pid_alive(int(pid))
    ):
        raise LockError(f"run {run.run_id} is still running (pid {pid})")


def run_fleet(
    run: RunState,
    request: FleetRequest,
    display: FleetDisplay,
    *,
    shared: SharedLearning | None = None,
) -> RunState:
    """Deploy every host of ``run`` that is not ``ok`` yet, batch by batch, as described in the
    module's docstring; the run's state is saved as each host starts and ends."""
    check_not_running(run)
    total = len(run.hosts)
    forks = request.rollout.forks
    if forks < 1:
        raise UsageError(f"--forks {forks}: must be at least 1")
    size = amount(request.rollout.batch, total, "--batch", minimum=1) or total
    allowed = amount(request.rollout.max_fail, total, "--max-fail", minimum=0) or 0
    own = shared is None
    if shared is None:
        knowledge = compose.open_knowledge(request.kb)
        shared = SharedLearning(
            knowledge, lambda: run_advisor(knowledge, request.config, request.mode)
        )
    endpoint = metrics.serve(request.config.metrics)
    try:
        return _rollout(run, request, display, shared, size, allowed)
    finally:
        if own:
            shared.close()
        metrics.try_write_textfile(request.config.metrics)
        if endpoint is not None:
            endpoint.close()


def run_advisor(knowledge: KnowledgeBase, config: Config | None, mode: str) -> RecoveryAdvisor:
    """The one advisor the hosts of a run share: a single deployment's, so under ``--auto``
    imported evidence raises no medium- or high-risk strategy above local support here either."""
    known = compose.strategies(knowledge)
    return compose.build_advisor(knowledge, config, known, auto=mode == "auto")


def _rollout(
    run: RunState,
    request: FleetRequest,
    display: FleetDisplay,
    shared: SharedLearning,
    size: int,
    allowed: int,
) -> RunState:
    total = len(run.hosts)
    forks = request.rollout.forks
    todo = [h for h in run.hosts if h.result is not HostResult.OK]
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    run.status = RunStatus.RUNNING
    run.reason = None
    run.end_time = None
    run.options["owner"] = {"pid": os.getpid(), "host": socket.gethostname()}
    for host in todo:
        host.result = HostResult.PENDING
    kept_secrets.save_run(run)  # what resume needs, never in the run's state
    run.save()
    stop = threading.Event()

    def failures() -> int:
        return sum(1 for h in run.hosts if h.result in FAILED_RESULTS)

    def one(host: HostRun, number: int) -> None:
        if stop.is_set():
            return
        _deploy_host(run, host, request, shared, display, number)
        if failures() > allowed:
            stop.set()

    for number, batch in enumerate(batches, 1):
        display("", "batch", number=number, total=len(batches), hosts=[h.name for h in batch])
        with ThreadPoolExecutor(max_workers=min(forks, len(batch))) as pool:
            for future in [pool.submit(one, host, number) for host in batch]:
                future.result()
        failed = failures()
        if failed > allowed:
            left = sum(1 for h in run.hosts if h.result is HostResult.PENDING)
            if left:
                run.status = RunStatus.STOPPED
                run.reason = (
                    f"{failed} host(s) failed or unhealthy (allowed: {allowed}); the rollout "
                    f"stopped after batch {number}/{len(batches)}, {left} host(s) not started"
                )
                break
    else:
        if all(h.result is HostResult.OK for h in run.hosts):
            run.status = RunStatus.COMPLETED
            kept_secrets.remove_run(run.run_id)
        else:
            run.status = RunStatus.FAILED
            run.reason = f"{failures()} of {total} host(s) failed or unhealthy"
    run.end_time = now_iso()
    run.options.pop("owner", None)
    run.save()
    display("", "run_end", status=run.status.value, reason=run.reason)
    _notify(run, request.config)
    return run


#: hosts named one by one in a run's webhook message (the rest are counted)
NOTICE_HOSTS = 25


def _notify(run: RunState, config: Config) -> None:
    """One webhook message for the run, with each host's result."""
    notifier = notify.Notifier(config.notifications)
    if not notifier.enabled:
        return
    ok = sum(1 for h in run.hosts if h.result is HostResult.OK)
    details = {h.name: h.result.value for h in run.hosts[:NOTICE_HOSTS]}
    if len(run.hosts) > NOTICE_HOSTS:
        details["more hosts"] = str(len(run.hosts) - NOTICE_HOSTS)
    event = notify.SUCCESS if run.status is RunStatus.COMPLETED else notify.FAILURE
    action = (
        None
        if event == notify.SUCCESS
        else f"Fix the cause, then run `aideploy resume {run.run_id}`."
    )
    summary = f"{ok}/{len(run.hosts)} hosts ok" + (f"; {run.reason}" if run.reason else "")
    notifier.send(
        notify.Notice(event, run.run_id, f"{len(run.hosts)} hosts", summary, action, details)
    )
    notifier.close()


def _deploy_host(
    run: RunState,
    host: HostRun,
    request: FleetRequest,
    shared: SharedLearning,
    display: FleetDisplay,
    batch: int,
) -> None:
    started = time.monotonic()
    host.result = HostResult.RUNNING
    host.batch = batch
    host.reason = None
    host.exit_code = 0
    display(host.name, "host_start", target=Target.from_state(host.target).describe())

    def progress(event: str, **data: Any) -> None:
        display(host.name, event, **data)

    target = Target.from_state(host.target)
    dreq = deploy_service.DeployRequest(
        plan_spec=request.plan_spec,
        target=target,
        config=request.config,
        env=host.env,
        kb=request.kb,
        mode=request.mode,
        secret_env=request.secret_env,
        run_id=run.run_id,
        host_name=host.name,
        groups=tuple(host.groups),
    )
    state: DeploymentState | None = None
    checked: list[str | None] = []

    def check(plan: Plan, ctx: StepContext) -> None:  # on the deployment's own connection
        display(host.name, "health")
        checked.append(health_of(plan.health, ctx))

    app = host.env.get("APP_NAME", run.plan)
    try:
        with host_lock(target.hostname, target.port, app, holder=f"run {run.run_id}"):
            state = _state_for(host, dreq)
            if host.deployment_id != state.deployment_id:
                host.deployment_id = state.deployment_id
                run.save()  # the run knows the host's new deployment before it runs
            if state.status is not DeploymentStatus.COMPLETED:
                state = deploy_service.run(
                    dreq,
                    state,
                    deploy_service.Operator(progress=progress),
                    shared=shared,
                    completed=check,
                )
            if checked:
                problem = checked[0]
            else:  # completed before (a resumed run): check it on a connection of its own
                display(host.name, "health")
                problem = health_problem(dreq, state)
        host.result = HostResult.UNHEALTHY if problem else HostResult.OK
        host.reason = problem
        if problem:
            host.exit_code = 4
    except ManualInterventionRequired as exc:
        host.result, host.reason, host.exit_code = HostResult.PAUSED, str(exc), exc.exit_code
    except AideployError as exc:
        host.result, host.reason, host.exit_code = HostResult.FAILED, str(exc), exc.exit_code
    except Exception as exc:  # one host's bug must not take the others down
        log.exception("host %s: internal error", host.name)
        host.result, host.reason = HostResult.FAILED, f"internal error: {type(exc).__name__}: {exc}"
        host.exit_code = 70
    finally:
        host.duration = round(host.duration + time.monotonic() - started, 3)
        if state is not None:
            _summarise(host, state)
        host.learned = [f"{x.error_class} -> {x.strategy}" for x in shared.learned_on(host.name)]
        run.save()
        display(host.name, "host_end", result=host.result.value, reason=host.reason)


def _state_for(host: HostRun, request: deploy_service.DeployRequest) -> DeploymentState:
    """The host's deployment state: the one it has (to continue), or a new one."""
    if host.deployment_id is not None:
        state = DeploymentState.load(host.deployment_id)
        if state.status is not DeploymentStatus.ABANDONED:
            if state.owner_alive():
                raise LockError(f"deployment {state.deployment_id} is still running")
            return state
    plan = deploy_service.prepare_plan(request.plan_spec, request.env, "dry")
    request.secrets()
    state = deploy_service.new_state(request, plan)
    state.save()
    return state


def health_problem(request: deploy_service.DeployRequest, state: DeploymentState) -> str | None:
    """Why the host is not healthy after its deployment (None: healthy, or no health check)."""
    if state.status is not DeploymentStatus.COMPLETED:
        return f"deployment ended {state.status.value}"
    plan = deploy_service.prepare_plan(
        request.plan_spec, {**request.env, **request.secrets()}, state.deployment_id
    )
    if plan.health is None:
        return None
    with compose.target_runner(request.config, request.target) as runner:
        ctx = StepContext(runner, runner.connector, plan.env, state.deployment_id, {})
        return health_of(plan.health, ctx)


def health_of(check: Check, ctx: StepContext) -> str | None:
    """Run a plan's health check on the context's target; None when it passes (or the plan has
    none), else why not."""
    if check is None:
        return None
    try:
        if isinstance(check, str):
            result = ctx.runner.run(check, env=ctx.env)
            if result.ok:
                return None
            return f"health check failed (exit {result.exit_code}): {result.tail(2)}"
        return None if check(ctx) else "health check failed"
    except AideployError as exc:
        return f"health check could not run: {exc}"


def _summarise(host: HostRun, state: DeploymentState) -> None:
    host.steps_total = state.total_steps
    host.steps_done = sum(
        1 for s in state.steps if s.status in (StepStatus.DONE, StepStatus.SKIPPED)
    )
    host.recoveries = [
        f"{step.name}: {entry.strategy} {entry.outcome}"
        for step in state.steps
        for entry in step.history
        if entry.kind == "outcome"
    ]
