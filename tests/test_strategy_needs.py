"""A recovery acts only on what the failure's evidence or the plan names: every parameter a
strategy uses is one of its catalogue ``needs``, a strategy is applied only when all of them are
given, and it sees nothing else."""

from __future__ import annotations

import itertools
import json
import re
import socket
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aideploy.core.clock import FakeClock
from aideploy.core.errors import ManualInterventionRequired, StepFailed
from aideploy.core.recovery import Candidate, Failure, Outcome
from aideploy.core.result import Result
from aideploy.core.settings import DeploymentSettings
from aideploy.core.strategies import CATALOGUE, StrategySpec
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.executor import Executor
from aideploy.engine.plan import Plan, Step
from aideploy.engine.recovery import StrategyContext
from aideploy.engine.runner import Runner
from aideploy.engine.state import DeploymentState, DeploymentStatus
from aideploy.steps.strategies import APPLY, Commands, Recovery, registry
from aideploy.steps.strategies.base import only_needs
from tests.support.cli import run_cli

NAMES = sorted(CATALOGUE)
#: values a detail or plan variable may take (never empty: an empty value is not a value)
VALUE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-", min_size=1, max_size=12)
#: what is not any strategy's need: noise in the failure and the plan
NOISE_DETAILS = {"tool": "curl", "host": "example.org"}
NOISE_VARIABLES = {"SITE_ROOT": "/srv/site", "UNRELATED": "x"}


class OneCandidate:
    """An advisor that proposes one strategy for every failure, whose details it sets."""

    def __init__(self, strategy: str, details: Mapping[str, str]) -> None:
        self.strategy = strategy
        self.details = dict(details)

    def detect(self, step: str, result: Result) -> Failure:
        return Failure(step, result, "unknown", "sig", self.details)

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        return [Candidate(self.strategy, 0.9, "proposed")]

    def record(self, failure: Failure, strategy: str, outcome: Outcome, **kw: object) -> None:
        pass


def _failing_step() -> Step:
    return Step("s", work=lambda ctx: Result("<s>", "local", 1, "", "it failed", 0.0))


def _run(spec: StrategySpec, details: dict[str, str], variables: dict[str, str]) -> list[object]:
    """Run a one-step plan that always fails, with ``spec``'s strategy (recording what it sees
    instead of working) proposed for it; the contexts it was applied with."""
    seen: list[object] = []

    def spy(ctx: StrategyContext) -> bool:
        seen.append(ctx)
        return False

    plan = Plan("p", (_failing_step(),), env=variables)
    connector = LocalConnector()
    executor = Executor(
        plan=plan,
        connector=connector,
        runner=Runner(connector, timeout=5),
        advisor=OneCandidate(spec.name, details),
        strategies={spec.name: Recovery(spec, only_needs(spec, spy))},
        state=DeploymentState("needs-1", "p", DeploymentStatus.PENDING, 0, 1, {}),
        settings=DeploymentSettings(max_retries=2, retry_delay=0.0, auto_approve=True),
        clock=FakeClock(),
        context={"host": "h", "keep_releases": "9"},
    )
    with pytest.raises(StepFailed):
        executor.run()
    return seen


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), name=st.sampled_from(NAMES))
def test_no_strategy_runs_with_a_parameter_neither_evidence_nor_plan_gave(
    data: st.DataObject, name: str
) -> None:
    spec = CATALOGUE[name]
    given_needs = data.draw(st.sets(st.sampled_from(spec.needs)) if spec.needs else st.just(set()))
    values = {n: data.draw(VALUE) for n in given_needs}
    details = {**NOISE_DETAILS, **{n: v for n, v in values.items() if n.islower()}}
    variables = {**NOISE_VARIABLES, **{n: v for n, v in values.items() if not n.islower()}}
    seen = _run(spec, details, variables)
    if set(given_needs) != set(spec.needs):
        assert seen == [], f"{name} ran without {set(spec.needs) - set(given_needs)}"
        return
    assert seen, f"{name} was given all it needs and did not run"
    for ctx in seen:
        assert isinstance(ctx, StrategyContext)
        # it sees exactly its needs: no other detail, no other plan variable or setting
        assert dict(ctx.failure.details) == {n: values[n] for n in spec.details}
        assert {k: v for k, v in ctx.settings.items() if k != "auto_approve"} == {
            n: values[n] for n in spec.plan_variables
        }


#: a shell parameter expansion with a default: ${NAME:-value}, ${NAME-value}, ${NAME:=value}
SHELL_DEFAULT = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?[-=]")


def test_no_catalogue_command_falls_back_to_a_default() -> None:
    checked = 0
    for name, apply in APPLY.items():
        if isinstance(apply, Commands):
            for command in (*apply.commands, apply.guard or ""):
                assert not SHELL_DEFAULT.search(command), f"{name}: {command}"
                checked += 1
    assert checked > 15


#: environment variables every shell has, which name nothing a failure or a plan gives
SHELL_VARIABLES = {"HOME"}


@pytest.mark.parametrize("name", [n for n in NAMES if isinstance(APPLY[n], Commands)])
def test_every_shell_variable_a_command_reads_is_a_need(name: str) -> None:
    """What a command strategy reads from its environment (AIDEPLOY_* details, plan variables)
    is in its catalogue needs: the commands cannot act on anything else it was given."""
    apply = APPLY[name]
    assert isinstance(apply, Commands)
    text = " ".join((*apply.commands, apply.guard or ""))
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\b", text)) - SHELL_VARIABLES
    needs = {f"AIDEPLOY_{n.upper()}" for n in CATALOGUE[name].details}
    needs |= set(CATALOGUE[name].plan_variables)
    assert read <= needs, f"{name} reads {read - needs}, which it does not declare"


def test_the_executor_skips_a_strategy_whose_needs_are_not_given_and_tries_the_next(
    tmp_path: Path,
) -> None:
    """connection refused without a service named: start_service is not a candidate, the
    deployment goes on to the next one (here manual intervention), nothing is run for it."""
    ran: list[str] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        def apply(ctx: StrategyContext) -> bool:
            ran.append(name)
            return True

        return apply

    class Advisor(OneCandidate):
        def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
            return [
                Candidate("start_service", 0.9, "t"),
                Candidate("manual_intervention", 0.1, "t"),
            ]

    strategies = registry(plugins=False)
    strategies["start_service"] = Recovery(CATALOGUE["start_service"], spy("start_service"))
    plan = Plan("p", (_failing_step(),))
    connector = LocalConnector()
    executor = Executor(
        plan=plan,
        connector=connector,
        runner=Runner(connector, timeout=5),
        advisor=Advisor("start_service", {"port": "5432"}),
        strategies=strategies,
        state=DeploymentState("needs-2", "p", DeploymentStatus.PENDING, 0, 1, {}),
        settings=DeploymentSettings(max_retries=2, retry_delay=0.0),
        clock=FakeClock(),
    )
    with pytest.raises(ManualInterventionRequired):
        executor.run()
    assert ran == []
    assert executor.state.steps[0].recoveries == ["manual_intervention"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_auto_connection_refused_starts_no_service_nobody_named(tmp_path: Path) -> None:
    """deploy --local --auto, a step meets a real refused connection that names no service: no
    service is started or restarted on this machine; the deployment fails with exit code 4."""
    port = _closed_port()
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f"""
name = "refused"
[[steps]]
name = "reach_backend"
commands = ["python3 -c \\"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\\""]
"""
    )
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"deployment": {"retry_delay": 0.01, "max_retries": 4}}))
    kb = tmp_path / "kb.db"
    proc = run_cli(
        tmp_path,
        "--config",
        str(config),
        "deploy",
        "--local",
        "--auto",
        "--plan",
        str(plan),
        "--kb",
        str(kb),
    )
    assert proc.returncode in (4, 5), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    state = json.loads(run_cli(tmp_path, "status", "--json").stdout)
    recoveries = list(itertools.chain.from_iterable(s["recoveries"] for s in state["steps"]))
    assert state["steps"][0]["error_class"] == "connection_refused", state
    assert not {"start_service", "restart_service"} & set(recoveries), recoveries
