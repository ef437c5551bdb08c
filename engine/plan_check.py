"""Checking a plan against a target without changing it: each step's verdict, in order.

A step with a ``preview`` says itself what it would change; otherwise its "already done?"
check decides (passes: skip, fails: change); a step with neither is ``unknown``. A step that
``follows`` an earlier step which would change changes too (a new release is built after a new
fetch) whatever its own check says now. Only checks and previews run, never a step's work.
"""

from __future__ import annotations

from aideploy.core.errors import AideployError
from aideploy.engine.plan import Plan, Step, StepContext
from aideploy.engine.preview import StepPreview, StepVerdict, Verdict


def check_plan(plan: Plan, ctx: StepContext) -> tuple[StepVerdict, ...]:
    changed: set[str] = set()
    found = []
    for step in plan.steps:
        preview = check_step(step, ctx)
        forced_by = [name for name in step.follows if name in changed]
        if forced_by and preview.verdict is not Verdict.CHANGE:
            preview = StepPreview(
                Verdict.CHANGE, f"follows {', '.join(forced_by)}, which changes", preview.files
            )
        if preview.verdict is Verdict.CHANGE:
            changed.add(step.name)
        found.append(StepVerdict(step.name, step.description, preview))
    return tuple(found)


def check_step(step: Step, ctx: StepContext) -> StepPreview:
    """One step's verdict now; a check that cannot run makes it ``unknown`` with the reason."""
    try:
        if step.preview is not None:
            return step.preview(ctx)
        if step.check is None:
            return StepPreview(Verdict.UNKNOWN, "no read-only check: the step always runs")
        if isinstance(step.check, str):
            done = ctx.runner.run(step.check, env=ctx.env, timeout=step.timeout).ok
        else:
            done = bool(step.check(ctx))
    except (AideployError, OSError) as exc:
        return StepPreview(Verdict.UNKNOWN, f"check failed: {exc}")
    if done:
        return StepPreview(Verdict.SKIP, "already done")
    return StepPreview(Verdict.CHANGE, "not done yet")
