"""A small plan around the stack plan's deploy lock, for the lock tests: take the lock, wait for
a gate file (``$GATE``, when set), release the lock. Loaded as ``tests.support.lock_plan:plan``
with the repository on ``PYTHONPATH``."""

from __future__ import annotations

from aideploy.engine.plan import Plan, Step
from aideploy.steps.stack import lock
from aideploy.steps.stack.common import DEFAULTS

WAIT_FOR_GATE = 'if [ -n "${GATE:-}" ]; then while [ ! -e "$GATE" ]; do sleep 0.05; done; fi'


def plan() -> Plan:
    return Plan(
        name="locked",
        env={**DEFAULTS, "APP_REPO": "https://example.invalid/app.git", "GATE": ""},
        steps=(
            Step("take_lock", "Take the deploy lock", work=lock.acquire, timeout=60),
            Step("work", "Wait for the gate", commands=(WAIT_FOR_GATE,), timeout=120),
            Step("give_back", "Release the deploy lock", work=lock.release, timeout=60),
        ),
        on_resume=lock.retake,
        on_failed=lock.release_after_failure,
    )
