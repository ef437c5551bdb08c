"""One deployment, wired together: target connector, runner, advisor, knowledge base, executor."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import ConfigError, ConnectError, KnowledgeBaseError, StepFailed
from aideploy.core.events import EventSink
from aideploy.core.redact import register_found, register_secret
from aideploy.engine import audit, kept_secrets, metrics, notify
from aideploy.engine.connectors.base import Connector
from aideploy.engine.executor import Executor
from aideploy.engine.logs import DeploymentLog
from aideploy.engine.plan import Plan, StepContext, load_plan, with_env
from aideploy.engine.progress import Progress, ProgressSink
from aideploy.engine.recovery import LazyAdvisor, RecoveryAdvisor
from aideploy.engine.responders import default_responders
from aideploy.engine.runner import LineSink, PromptAsker, Runner
from aideploy.engine.state import DeploymentState, DeploymentStatus, new_deployment_id
from aideploy.knowledge.recorder import KnowledgeRecorder
from aideploy.services import compose
from aideploy.services.config import Config
from aideploy.services.shared_learning import SharedLearning
from aideploy.services.target import Target

log = logging.getLogger("aideploy.deploy")


@dataclass
class Operator:
    """How the deployment talks to the person running it."""

    approve: Callable[[str], bool] = lambda question: False
    ask_secret: Callable[[str], str] | None = None
    ask_prompt: PromptAsker | None = None  # interactive mode: unanswered prompts
    on_line: LineSink | None = None
    on_command: Callable[[str], None] | None = None
    progress: Progress | None = None
    #: wraps the target's connector before use (e.g. to record what runs, for a benchmark)
    wrap_connector: Callable[[Connector], Connector] | None = None


@dataclass
class DeployRequest:
    plan_spec: str
    target: Target
    config: Config
    env: Mapping[str, str] = field(default_factory=dict)
    kb: str | None = None
    mode: str = "default"  # default | interactive | auto
    secret_env: tuple[str, ...] = ()  # plan variables read from the local environment
    #: in a fleet run: the run it belongs to and the host's inventory name
    run_id: str | None = None
    host_name: str | None = None
    groups: tuple[str, ...] = ()

    def secrets(self) -> dict[str, str]:
        """Values of ``secret_env`` now; registered so they are masked everywhere."""
        found = {}
        for name in self.secret_env:
            value = os.environ.get(name)
            if value is None:
                raise ConfigError(f"--secret-env {name} is not set in the environment")
            register_secret(value)
            found[name] = value
        return found


def new_state(request: DeployRequest, plan: Plan) -> DeploymentState:
    target = request.target
    state = DeploymentState(
        deployment_id=new_deployment_id(),
        plan=plan.name,
        status=DeploymentStatus.PENDING,
        current_step=0,
        total_steps=len(plan.steps),
        server_info={
            "hostname": target.hostname,
            "username": target.username,
            "port": target.port,
            "kind": target.kind,
        },
        profile=target.profile,
    )
    state.options = {
        "plan_spec": request.plan_spec,
        "env": dict(request.env),
        "target": target.to_state(),
        "kb": request.kb,
        "mode": request.mode,
        "secret_env": list(request.secret_env),  # names only, never values
    }
    if request.run_id is not None:
        state.options["run_id"] = request.run_id
        state.options["host_name"] = request.host_name
        state.options["groups"] = list(request.groups)
    return state


def prepare_plan(plan_spec: str, env: Mapping[str, str], deployment_id: str) -> Plan:
    """The plan with its variables; values of secret-looking names (``DB_PASSWORD``, ``*_TOKEN``)
    a plan file sets are registered, so they are masked wherever they would be shown."""
    plan = load_plan(plan_spec)
    register_found(dict(plan.env))
    register_found(dict(env))
    return with_env(plan, {**env, "DEPLOYMENT_ID": deployment_id})


def run(
    request: DeployRequest,
    state: DeploymentState,
    operator: Operator,
    *,
    clock: Clock | None = None,
    shared: SharedLearning | None = None,
    completed: Callable[[Plan, StepContext], None] | None = None,
) -> DeploymentState:
    """Run (or resume) ``state``'s deployment to the end. Raises StepFailed on failure.

    In a fleet run, ``shared`` is the run's one knowledge base and ranker, and ``completed`` is
    called with the plan and the steps' context when the deployment completed, while its connection is still
    open (the run's health check)."""
    plan = prepare_plan(
        request.plan_spec, {**request.env, **request.secrets()}, state.deployment_id
    )
    config = request.config
    clock = clock or SystemClock()
    resumed = state.status is not DeploymentStatus.PENDING
    sinks: list[EventSink] = []
    advisor: RecoveryAdvisor
    if shared is not None:
        knowledge = shared.knowledge
        advisor = shared.advisor(request.host_name or request.target.hostname)
        if config.ai_features.learn_from_failures:
            sinks.append(shared.recorder())
    else:
        with _before_the_first_command(state, resumed):
            knowledge = compose.open_knowledge(request.kb)
        advisor = LazyAdvisor(
            lambda: compose.build_advisor(
                knowledge, config, strategies, auto=request.mode == "auto"
            )
        )
        if config.ai_features.learn_from_failures:
            sinks.append(KnowledgeRecorder(knowledge))
    strategies = (
        compose.strategies(knowledge)
        if shared is None
        else shared.strategies(lambda: compose.strategies(knowledge))
    )
    if operator.progress is not None:
        sinks.append(ProgressSink(operator.progress))
    with _before_the_first_command(state, resumed):
        connector = compose.build_connector(request.target, ask_secret=operator.ask_secret)
    if operator.wrap_connector is not None:
        connector = operator.wrap_connector(connector)
    target = request.target.describe()
    notifier = notify.Notifier(config.notifications)
    kept_secrets.save(state.deployment_id, request.env)  # what resume needs, never in the state
    with DeploymentLog(state.deployment_id, target) as dlog:
        state.options["log"] = str(dlog.files.human)
        started = time.monotonic()
        # a fleet run serves and writes the metrics once for all its hosts
        endpoint = metrics.serve(config.metrics) if shared is None else None
        notifier.started(state, target)
        runner: Runner | None = None
        try:
            with _before_the_first_command(state, resumed):
                connector.connect()
            runner = Runner(
                connector,
                responders=default_responders(
                    accept_new_host_keys=request.target.accept_new_host_key
                ),
                on_line=operator.on_line,
                on_command=operator.on_command,
                ask=operator.ask_prompt if request.mode == "interactive" else None,
                clock=clock,
                timeout=config.deployment.command_timeout,
            )
            context = {
                "host": request.target.hostname,
                "plan": plan.name,
                "keep_releases": str(config.deployment.keep_releases),
            }
            for pattern in config.custom_patterns:
                if pattern.recovery not in strategies:
                    log.warning(
                        "custom pattern %s names recovery %s, which no built-in, plugin or "
                        "trusted knowledge-base strategy provides: it is never run",
                        pattern.name,
                        pattern.recovery,
                    )
            executor = Executor(
                plan=plan,
                connector=connector,
                runner=runner,
                advisor=advisor,
                strategies=strategies,
                state=state,
                settings=config.deployment,
                clock=clock,
                approve=operator.approve,
                sinks=sinks,
                context=context,
            )
            ctx = StepContext(
                runner, connector, plan.env, state.deployment_id, dict(context), clock
            )
            if resumed and plan.on_resume is not None:
                _before_resume(plan, ctx)
            try:
                final = executor.run()
            except StepFailed:
                if state.status is DeploymentStatus.FAILED and plan.on_failed is not None:
                    _after_failure(plan, ctx)
                raise
            if final.status is DeploymentStatus.FAILED and plan.on_failed is not None:
                _after_failure(plan, ctx)  # ended without an error, but not every step finished
            if final.status is DeploymentStatus.COMPLETED and completed is not None:
                completed(plan, ctx)
            return final
        finally:
            if runner is not None:
                try:
                    runner.close()
                except Exception as exc:  # the connection may be gone; never hide the result
                    log.warning("could not remove private files on the target: %s", exc)
            connector.close()
            if state.status is DeploymentStatus.COMPLETED:
                kept_secrets.remove(state.deployment_id)
            notifier.finished(state, target)
            notifier.close()
            audit.try_record(
                "resume" if resumed else "deploy",
                result=state.status.value,
                target=target,
                deployment_id=state.deployment_id,
                details={"plan": plan.name, "profile": state.profile, "reason": state.reason},
            )
            if shared is None:
                metrics.try_write_textfile(config.metrics)
            if endpoint is not None:
                endpoint.close()
            log.info(
                "deployment %s finished in %.1fs", state.deployment_id, time.monotonic() - started
            )


@contextmanager
def _before_the_first_command(state: DeploymentState, resumed: bool) -> Iterator[None]:
    """A failure here (the target refused, unknown host key, a key that is not there or not
    accepted, a name that does not resolve, a knowledge base that cannot be opened) is a
    configuration error: nothing ran, nothing is recovered, and a new deployment leaves no
    state behind."""
    try:
        yield
    except (ConfigError, ConnectError, KnowledgeBaseError):
        if not resumed:
            state.path.unlink(missing_ok=True)
        raise


def _before_resume(plan: Plan, ctx: StepContext) -> None:
    """The plan's resume hook (the stack plan takes its deploy lock back). A failing result (or
    an error it raises) refuses the resume and leaves the deployment as it was."""
    assert plan.on_resume is not None
    result = plan.on_resume(ctx)
    if result is not None and not result.ok:
        raise StepFailed(f"cannot resume {ctx.deployment_id}: {result.tail(3)}")


def _after_failure(plan: Plan, ctx: StepContext) -> None:
    """The plan's failure hook (the stack plan releases its deploy lock). Best effort: the
    connection may be gone, and the deployment's own failure is what gets reported."""
    assert plan.on_failed is not None
    try:
        result = plan.on_failed(ctx)
    except Exception as exc:
        log.warning("after the failure, %s could not clean up: %s", plan.name, exc)
        return
    if result is not None and not result.ok:
        log.warning("after the failure, %s could not clean up: %s", plan.name, result.tail(2))
