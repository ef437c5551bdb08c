"""``deploy --check``: what a deployment would change on its target, found without changing it.

Before connecting, every variable the plan's steps require must be set (one error names them
all). Then each step's preview or check runs on the target (never its work, never the plan's
hooks): no deployment state, no deploy lock, no file left behind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from aideploy.engine.plan import Plan, StepContext, require_variables
from aideploy.engine.plan_check import check_plan
from aideploy.engine.preview import StepVerdict, Verdict
from aideploy.engine.runner import Runner
from aideploy.engine.state import new_deployment_id
from aideploy.services import compose
from aideploy.services.deploy import DeployRequest, prepare_plan
from aideploy.services.target import Ask

#: the version of the ``deploy --check --json`` document (docs/json.md)
SCHEMA = 1


@dataclass(frozen=True)
class PlanCheck:
    """The verdict of every step of one plan on one target."""

    plan: str
    target: str
    steps: tuple[StepVerdict, ...]

    def count(self, verdict: Verdict) -> int:
        return sum(1 for step in self.steps if step.preview.verdict is verdict)

    def to_json(self) -> dict[str, object]:
        counts = Counter(step.preview.verdict.value for step in self.steps)
        return {
            "schema": SCHEMA,
            "plan": self.plan,
            "target": self.target,
            "steps": [step.to_json() for step in self.steps],
            "summary": {verdict.value: counts.get(verdict.value, 0) for verdict in Verdict},
        }


def checked_plan(request: DeployRequest) -> Plan:
    """The request's plan with its variables; raises ConfigError naming every unset required
    variable (nothing has connected yet)."""
    plan = prepare_plan(
        request.plan_spec, {**request.env, **request.secrets()}, new_deployment_id()
    )
    require_variables(plan)
    return plan


def check(request: DeployRequest, ask_secret: Ask | None = None) -> PlanCheck:
    """Connect to the request's target and say, step by step, what a deploy would change."""
    plan = checked_plan(request)
    connector = compose.build_connector(request.target, ask_secret=ask_secret, session=False)
    connector.connect()
    try:
        runner = Runner(connector, timeout=request.config.deployment.command_timeout)
        ctx = StepContext(runner, connector, plan.env, plan.env["DEPLOYMENT_ID"])
        try:
            steps = check_plan(plan, ctx)
        finally:
            runner.close()
    finally:
        connector.close()
    return PlanCheck(plan.name, request.target.describe(), steps)
