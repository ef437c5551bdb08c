"""Clearing up after a deployment that will not finish: remove a dead holder's deploy lock on a
target (``unlock``), or give a deployment up for good (``abandon``), releasing what it holds.

Both refuse (LockError, exit code 6) while the process that holds the lock or runs the
deployment is alive, or cannot be told dead from here, unless forced; both are audited.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from aideploy.core.errors import (
    AideployError,
    KnowledgeBaseError,
    LockError,
    StateError,
    UsageError,
)
from aideploy.core.events import AttemptDecided
from aideploy.core.recovery import Outcome
from aideploy.engine import audit, kept_secrets
from aideploy.engine.plan import StepContext
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepStatus, now_iso
from aideploy.knowledge.recorder import KnowledgeRecorder
from aideploy.services import compose
from aideploy.services.compose import target_runner
from aideploy.services.config import Config
from aideploy.services.deploy import prepare_plan
from aideploy.services.target import Ask, Target
from aideploy.steps.stack import lock
from aideploy.steps.stack.common import DEFAULTS

log = logging.getLogger("aideploy.locks")


def unlock(
    config: Config,
    target: Target,
    plan_vars: Mapping[str, str],
    *,
    force: bool = False,
    ask_secret: Ask | None = None,
) -> dict[str, str] | None:
    """Remove the deploy lock of ``APP_NAME`` on ``target``; returns what it held (None: there
    was no lock). Raises LockError while its holder may be alive and ``force`` is not given."""
    app = plan_vars.get("APP_NAME", DEFAULTS["APP_NAME"])
    with target_runner(config, target, ask_secret) as runner:
        holder = lock.holder(runner, app)
        if holder is None:
            return None
        alive = lock.holder_alive(holder)
        if alive is None and "deployment_id" in holder and holder.get("from") == _host():
            alive = _state_owner_alive(holder["deployment_id"])
        if alive is not False and not force:
            audit.try_record(
                "unlock", result="refused", target=target.describe(), details={"holder": holder}
            )
            why = "its process is alive" if alive else "it cannot be told dead from here"
            raise LockError(
                f"deploy lock held by {lock.describe(holder)} (app {app} on "
                f"{target.describe()}): {why}; not removed",
                hint="--force removes it anyway",
            )
        if "deployment_id" in holder:
            removed = lock.break_lock(runner, app, holder["deployment_id"])
        else:
            removed = lock.remove(runner, app)
    audit.try_record(
        "unlock",
        result="ok" if removed else "failed",
        target=target.describe(),
        deployment_id=holder.get("deployment_id"),
        details={"holder": holder, "force": force},
    )
    if not removed:
        raise LockError(f"deploy lock of {app} on {target.describe()} changed hands; not removed")
    return holder


@dataclass
class Abandoned:
    state: DeploymentState
    #: what happened to what it held on the target: released, or how to release it
    notes: list[str] = field(default_factory=list)


def abandon(
    config: Config, deployment_id: str, *, force: bool = False, ask_secret: Ask | None = None
) -> Abandoned:
    """Mark a deployment that will not finish ABANDONED (``resume`` refuses it from then on) and
    give back what its plan holds on the target (the stack plan's deploy lock)."""
    state = DeploymentState.load(deployment_id)
    if state.status is DeploymentStatus.COMPLETED:
        raise UsageError(f"deployment {deployment_id} completed; there is nothing to abandon")
    if state.status is DeploymentStatus.ABANDONED:
        return Abandoned(state, ["it was already abandoned"])
    if state.owner_alive() and not force:
        raise LockError(
            f"deployment {deployment_id} is still running (pid {state.owner.get('pid')} on "
            f"{state.owner.get('host')})",
            hint="--force abandons it anyway",
        )
    was = state.status.value
    state.status = DeploymentStatus.ABANDONED
    state.reason = f"abandoned by {getpass.getuser()} (was {was}: {state.reason or '-'})"
    state.end_time = state.end_time or now_iso()
    for step in state.steps:
        if step.status in (StepStatus.RUNNING, StepStatus.RECOVERING, StepStatus.PAUSED):
            step.status = StepStatus.FAILED
            step.ended_at = step.ended_at or state.end_time
    state.owner = {}
    state.save()
    kept_secrets.remove(deployment_id)
    result = Abandoned(state, [_give_back(config, state, ask_secret), _settle(state)])
    audit.try_record(
        "abandon",
        result="ok",
        target=Target.from_state(state.options.get("target", {})).describe(),
        deployment_id=deployment_id,
        details={
            "was": was,
            "force": force,
            "released": result.notes[0],
            "knowledge": result.notes[1],
        },
    )
    return result


def _settle(state: DeploymentState) -> str:
    """Mark the deployment abandoned in its knowledge base and settle the recovery attempts it
    left undecided (killed while a strategy acted, or before the knowledge base heard of the
    attempt): no resume will decide them now, so they are kept as ``unknown``. A sentence saying
    what happened."""
    undecided = [step for step in state.steps if step.pending is not None]
    try:
        with compose.open_knowledge(state.options.get("kb")) as kb:
            with contextlib.suppress(KnowledgeBaseError):  # it never reached the KB
                kb.finish_deployment(state.deployment_id, "abandoned")
            recorder = KnowledgeRecorder(kb)
            for step in undecided:
                p = step.pending
                assert p is not None
                recorder.publish(
                    AttemptDecided(
                        state.deployment_id,
                        p.failure(step.name, ""),
                        p.strategy,
                        Outcome.UNKNOWN,
                        p.duration,
                        p.decided_by,
                        p.context,
                        p.attempt_id,
                    )
                )
            settled = len(undecided) + kb.settle_pending(state.deployment_id)
    except AideployError as exc:
        log.warning("abandon %s: knowledge base not updated: %s", state.deployment_id, exc)
        return f"its knowledge base could not be updated ({exc})"
    if undecided:
        for step in undecided:
            step.pending = None
        state.save()
    if not settled:
        return "no recovery attempt of it was left undecided"
    return f"{settled} recovery attempt(s) it left undecided kept as unknown"


def _give_back(config: Config, state: DeploymentState, ask_secret: Ask | None) -> str:
    """Run the plan's failure hook (the stack plan releases its lock, if it is still this
    deployment's); a sentence saying what happened."""
    opts = state.options
    target = Target.from_state(opts.get("target", {}))
    env = dict(opts.get("env", {}))
    try:
        plan = prepare_plan(str(opts.get("plan_spec", state.plan)), env, state.deployment_id)
    except AideployError as exc:
        return f"its plan could not be loaded ({exc}): nothing released"
    if plan.on_failed is None:
        return "its plan holds nothing on the target"
    how = f"aideploy unlock --set APP_NAME={plan.env.get('APP_NAME', '?')} (with its target)"
    try:
        with target_runner(config, target, ask_secret) as runner:
            ctx = StepContext(runner, runner.connector, plan.env, state.deployment_id, {})
            outcome = plan.on_failed(ctx)
    except Exception as exc:
        return f"could not release its lock on {target.describe()} ({exc}); run {how}"
    if outcome is not None and not outcome.ok:
        return f"could not release its lock on {target.describe()} ({outcome.tail(1)}); run {how}"
    return f"released what it held on {target.describe()}"


def _host() -> str:
    return socket.gethostname()


def _state_owner_alive(deployment_id: str) -> bool | None:
    """For a lock without a pid taken from this machine: its deployment's state says."""
    try:
        state = DeploymentState.load(deployment_id)
    except StateError:
        return None
    if state.status is DeploymentStatus.RUNNING:
        return state.owner_alive()
    return False
