"""The deploy lock on the target: one deployment at a time per app.

``/var/lock/aideploy-$APP_NAME.lock`` holds who took it, from where, when and for which
deployment. A second deployment is refused with that information; the same deployment (a resume)
keeps its lock. A lock left by a dead deployment is broken explicitly, by naming its deployment id
(``--set BREAK_LOCK=<id>`` on the next deploy, or :func:`break_lock`).

A held lock ends the deployment at once with :class:`LockHeld` (exit code 6), naming its holder;
it is never "recovered" by retrying. ``LOCK_WAIT`` (``deploy --wait SECONDS``) waits that long for
it first. ``aideploy unlock`` removes a lock whose holder is dead (:func:`holder_alive`).

The last step releases it, whatever its outcome; a deployment that ends FAILED earlier releases
it too (:func:`release_after_failure`, the plan's ``on_failed`` hook), and takes it back when it is
resumed (:func:`retake`, ``on_resume``). A deployment PAUSED for manual intervention keeps it: it
is waiting for a person, and its resume continues under it.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket

from aideploy.core.errors import ConfigError, LockHeld
from aideploy.core.process import pid_alive
from aideploy.core.result import Result
from aideploy.engine import audit
from aideploy.engine.plan import StepContext
from aideploy.engine.runner import Runner
from aideploy.steps.stack.common import run, validate

ACQUIRE = r"""
mkdir -p "$(dirname "$LOCK")"
if [ -n "$BREAK_LOCK" ] && [ -f "$LOCK" ] && grep -q "\"deployment_id\": \"$BREAK_LOCK\"" "$LOCK"; then
  echo "breaking the lock of deployment $BREAK_LOCK: $(cat "$LOCK")" >&2
  rm -f "$LOCK"
fi
tmp="$LOCK.$DEPLOYMENT_ID"
printf '%s\n' "$LOCK_INFO" > "$tmp"
if ln "$tmp" "$LOCK" 2>/dev/null; then rm -f "$tmp"; echo "lock taken"; exit 0; fi
rm -f "$tmp"
if grep -q "\"deployment_id\": \"$DEPLOYMENT_ID\"" "$LOCK"; then echo "lock already ours"; exit 0; fi
echo "deploy lock held: another deployment is running on this host ($(cat "$LOCK")); if it is dead, break its lock with --set BREAK_LOCK=<its deployment_id>" >&2
exit 75
"""

#: the exit status of ACQUIRE when another deployment holds the lock
HELD = 75

RELEASE = r"""
if [ -f "$LOCK" ] && grep -q "\"deployment_id\": \"$DEPLOYMENT_ID\"" "$LOCK"; then rm -f "$LOCK"; fi
"""


log = logging.getLogger("aideploy.lock")

#: seconds between two tries while waiting for a held lock
POLL = 0.5


def lock_info(deployment_id: str) -> str:
    from datetime import UTC, datetime

    return json.dumps(
        {
            "deployment_id": deployment_id,
            "who": getpass.getuser(),
            "from": socket.gethostname(),
            "pid": str(os.getpid()),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def describe(holder: dict[str, str]) -> str:
    """Who holds a lock, in a few words: deployment, user@host, pid, since when."""
    if "deployment_id" not in holder:
        return f"unreadable lock content {holder.get('raw', '')!r}"
    who = f"{holder.get('who', '?')}@{holder.get('from', '?')}"
    pid = f", pid {holder['pid']}" if holder.get("pid") else ""
    return f"deployment {holder['deployment_id']} ({who}{pid}, since {holder.get('since', '?')})"


def _held_by(stderr: str) -> dict[str, str]:
    """The lock's content as ACQUIRE reported it (between the first '(' and ');')."""
    start, end = stderr.find("("), stderr.find("); if it is dead")
    try:
        data = json.loads(stderr[start + 1 : end])
    except ValueError:
        return {"raw": stderr.strip()}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def acquire(ctx: StepContext) -> Result:
    """Take the lock. Held by another deployment: wait up to ``LOCK_WAIT`` seconds (saying so
    once), then raise :class:`LockHeld`."""
    wait = float(ctx.env.get("LOCK_WAIT", "0") or 0)
    clock = ctx.clock
    deadline = clock.now() + wait
    waiting = False
    while True:
        result = _try_acquire(ctx)
        if result.ok or result.exit_code != HELD:
            return result
        holder = _held_by(result.stderr)
        if clock.now() >= deadline:
            app = ctx.env.get("APP_NAME", "")
            dead = holder.get("deployment_id", "<its deployment id>")
            raise LockHeld(
                f"deploy lock held by {describe(holder)} (app {app} on {ctx.connector.host})",
                holder=holder,
                hint=f"if it is dead: aideploy unlock --set APP_NAME={app} with this target, "
                f"or deploy with --set BREAK_LOCK={dead}",
            )
        if not waiting:
            waiting = True
            log.warning("deploy lock held by %s: waiting up to %g s for it", describe(holder), wait)
        clock.sleep(min(POLL, max(0.0, deadline - clock.now())))


def _try_acquire(ctx: StepContext) -> Result:
    result = run(ctx, ACQUIRE, timeout=30, LOCK_INFO=lock_info(ctx.deployment_id))
    if "breaking the lock of deployment" in result.stderr:
        audit.try_record(
            "lock_break",
            result="ok" if result.ok else "failed",
            target=ctx.connector.host,
            deployment_id=ctx.deployment_id,
            details={"broken": ctx.env.get("BREAK_LOCK", "")},
        )
    return result


def release(ctx: StepContext) -> Result:
    return run(ctx, RELEASE, timeout=30)


def release_after_failure(ctx: StepContext) -> Result | None:
    """Give the lock back when the deployment ended FAILED (only if it is this deployment's)."""
    try:
        validate(ctx.env)
    except ConfigError:
        return None  # failed on its settings: it never took the lock
    return release(ctx)


def retake(ctx: StepContext) -> Result | None:
    """Before a resume: take the lock again, or keep it if it is still ours. Another deployment
    holding it refuses the resume (LockHeld, exit code 6)."""
    try:
        validate(ctx.env)
    except ConfigError:
        return None  # the first step fails on them again, before any lock matters
    try:
        return acquire(ctx)
    except LockHeld as exc:
        raise LockHeld(
            f"cannot resume {ctx.deployment_id}: {exc.message}", holder=exc.holder, hint=exc.hint
        ) from None


def holder(runner: Runner, app_name: str) -> dict[str, str] | None:
    """The lock's content on the target, or None when it is free."""
    result = runner.run('cat "/var/lock/aideploy-$APP_NAME.lock"', env={"APP_NAME": app_name})
    if not result.ok:
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return {"raw": result.stdout}
    return {str(k): str(v) for k, v in data.items()}


def holder_alive(holder: dict[str, str]) -> bool | None:
    """Is the process holding the lock alive? True or False when it ran on this machine and
    recorded its pid; None when that cannot be told from here (another machine, no pid)."""
    pid = holder.get("pid", "")
    if holder.get("from") != socket.gethostname() or not pid.isdigit():
        return None
    return pid_alive(int(pid))


def remove(runner: Runner, app_name: str) -> bool:
    """Remove the lock whatever it holds; True when it is gone."""
    result = runner.run('rm -f "$LOCK"', env={"LOCK": f"/var/lock/aideploy-{app_name}.lock"})
    return result.ok


def break_lock(runner: Runner, app_name: str, deployment_id: str) -> bool:
    """Remove the lock if (and only if) it belongs to ``deployment_id``; True when removed."""
    result = runner.run(
        'grep -q "\\"deployment_id\\": \\"$OWNER\\"" "$LOCK" && rm -f "$LOCK"',
        env={"LOCK": f"/var/lock/aideploy-{app_name}.lock", "OWNER": deployment_id},
    )
    return result.ok
