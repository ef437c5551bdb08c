"""Going back a release on a target: list the releases kept there, or switch to an earlier one
(with its database dump when asked), then notify and audit what happened."""

from __future__ import annotations

from collections.abc import Mapping

from aideploy.core.errors import AideployError, UsageError
from aideploy.core.result import Result
from aideploy.engine import audit, notify
from aideploy.engine.state import DeploymentState, DeploymentStatus, new_deployment_id
from aideploy.services.compose import target_runner
from aideploy.services.config import Config
from aideploy.services.target import Ask, Target
from aideploy.steps.stack.releases import Release, list_releases
from aideploy.steps.stack.releases import rollback as switch_back


def releases(
    config: Config, target: Target, plan_vars: Mapping[str, str], ask_secret: Ask | None = None
) -> list[Release]:
    """The releases kept on ``target``, newest first."""
    with target_runner(config, target, ask_secret) as runner:
        return list(list_releases(runner, **plan_vars))


def rollback(
    config: Config,
    target: Target,
    plan_vars: Mapping[str, str],
    *,
    to: str | None = None,
    with_database: bool = False,
    ask_secret: Ask | None = None,
) -> Result:
    """Switch ``target`` back to release ``to`` (default: the previous one); raises
    AideployError when the switch failed, after notifying and auditing it either way."""
    with target_runner(config, target, ask_secret) as runner:
        try:
            result = switch_back(runner, to=to, with_database=with_database, **plan_vars)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    notify_rollback(config, target.describe(), result.ok, to, result.tail(2))
    audit.try_record(
        "rollback",
        result="ok" if result.ok else "failed",
        target=target.describe(),
        details={"to": to, "with_database": with_database},
    )
    if not result.ok:
        raise AideployError(f"rollback failed: {result.tail(3)}")
    return result


def notify_rollback(config: Config, target: str, ok: bool, to: str | None, tail: str) -> None:
    """Tell the configured webhooks about a rollback."""
    state = DeploymentState(
        deployment_id=new_deployment_id(),
        plan="rollback",
        status=DeploymentStatus.COMPLETED if ok else DeploymentStatus.FAILED,
        current_step=1,
        total_steps=1,
        server_info={"hostname": target},
        reason=(
            f"rolled back to {to or 'the previous release'}" if ok else f"rollback failed: {tail}"
        ),
    )
    notifier = notify.Notifier(config.notifications)
    notifier.rolled_back(state, target)
    notifier.close()
