"""The deploy lock on the target: one deployment at a time per app.

``/var/lock/aideploy-$APP_NAME.lock`` holds who took it, from where, when and for which
deployment. A second deployment is refused with that information; the same deployment (a resume)
keeps its lock. A lock left by a dead deployment is broken explicitly, by naming its deployment id
(``--set BREAK_LOCK=<id>`` on the next deploy, or :func:`break_lock`).

The last step releases it, whatever its outcome; a deployment that ends FAILED earlier releases
it too (:func:`release_after_failure`, the plan's ``on_failed`` hook), and takes it back when it is
resumed (:func:`retake`, ``on_resume``). A deployment PAUSED for manual intervention keeps it: it
is waiting for a person, and its resume continues under it.
"""

from __future__ import annotations

import getpass
import json
import socket

from aideploy.core.errors import ConfigError, LockError
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

RELEASE = r"""
if [ -f "$LOCK" ] && grep -q "\"deployment_id\": \"$DEPLOYMENT_ID\"" "$LOCK"; then rm -f "$LOCK"; fi
"""


def lock_info(deployment_id: str) -> str:
    from datetime import UTC, datetime

    return json.dumps(
        {
            "deployment_id": deployment_id,
            "who": getpass.getuser(),
            "from": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


def acquire(ctx: StepContext) -> Result:
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
    holding it refuses the resume (LockError, exit code 6)."""
    try:
        validate(ctx.env)
    except ConfigError:
        return None  # the first step fails on them again, before any lock matters
    result = acquire(ctx)
    if not result.ok and "deploy lock held" in result.stderr:
        raise LockError(f"cannot resume {ctx.deployment_id}: {result.stderr.strip()}")
    return result


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


def break_lock(runner: Runner, app_name: str, deployment_id: str) -> bool:
    """Remove the lock if (and only if) it belongs to ``deployment_id``; True when removed."""
    result = runner.run(
        'grep -q "\\"deployment_id\\": \\"$OWNER\\"" "$LOCK" && rm -f "$LOCK"',
        env={"LOCK": f"/var/lock/aideploy-{app_name}.lock", "OWNER": deployment_id},
    )
    return result.ok
