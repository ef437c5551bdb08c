"""The executor against real failures on this machine, with the guide's rule table as advisor."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from aideploy.core.backoff import Backoff
from aideploy.core.clock import FakeClock
from aideploy.core.errors import ManualInterventionRequired, RecoveryExhausted
from aideploy.core.events import EventSink
from aideploy.core.settings import DeploymentSettings
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.executor import Executor
from aideploy.engine.plan import Plan, Step
from aideploy.engine.recovery import RecoveryAdvisor
from aideploy.engine.runner import Runner
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepStatus
from aideploy.knowledge.exchange import iter_export
from aideploy.knowledge.history import ListHistory
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.recorder import KnowledgeRecorder
from aideploy.knowledge.rules import ErrorPattern, GuideTable, RuleSet
from aideploy.knowledge.store import KnowledgeBase
from aideploy.steps.strategies import registry


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))


def _state(plan: Plan, dep_id: str) -> DeploymentState:
    return DeploymentState(dep_id, plan.name, DeploymentStatus.PENDING, 0, len(plan.steps), {})


def _executor(
    plan: Plan,
    *,
    approve: bool = False,
    strategies: dict | None = None,
    max_retries: int = 3,
    dep_id: str = "test-1",
    advisor: RecoveryAdvisor | None = None,
    sinks: Sequence[EventSink] = (),
) -> tuple[Executor, FakeClock]:
    clock = FakeClock()
    connector = LocalConnector()
    executor = Executor(
        plan=plan,
        connector=connector,
        runner=Runner(connector, timeout=30),
        advisor=advisor if advisor is not None else GuideTable(),
        strategies=strategies if strategies is not None else registry(),
        state=_state(plan, dep_id),
        settings=DeploymentSettings(max_retries=max_retries, retry_delay=1.0),
        clock=clock,
        approve=lambda question: approve,
        sinks=sinks,
    )
    return executor, clock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HOLD = (
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
    "s.listen(); time.sleep(300)"
)

BIND = (
    "python3 -c 'import socket,sys; s=socket.socket(); "
    's.bind(("127.0.0.1", int(sys.argv[1])))\' "$PORT" 2>/dev/null || '
    '{ echo "bind() to 127.0.0.1:$PORT failed (98: Address already in use)" >&2; exit 1; }'
)


def test_port_held_by_a_real_process_is_freed_and_the_step_completes(tmp_path: Path) -> None:
    port = _free_port()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        plan = Plan(
            "bind", (Step("serve", "bind the port", commands=(BIND,)),), env={"PORT": str(port)}
        )
        executor, clock = _executor(plan, approve=True)
        state = executor.run()
        assert state.status is DeploymentStatus.COMPLETED
        step = state.steps[0]
        assert step.status is StepStatus.DONE
        assert step.attempts == 2 and step.recoveries == ["free_port"]
        assert step.error_class == "port_in_use"
        assert holder.wait(timeout=10) is not None  # the holder was stopped for real
        assert clock.sleeps, "the retry waited through the injected clock"
        saved = DeploymentState.load("test-1")
        assert saved.status is DeploymentStatus.COMPLETED and saved.error_count == 1
    finally:
        holder.kill()
        holder.wait()


def test_foreign_process_not_killed_without_approval() -> None:
    port = _free_port()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(port)])
    try:
        time.sleep(0.5)
        plan = Plan("bind", (Step("serve", commands=(BIND,)),), env={"PORT": str(port)})
        executor, _ = _executor(plan, approve=False)
        with pytest.raises(ManualInterventionRequired):
            executor.run()
        assert holder.poll() is None, "a foreign process was killed without approval"
        assert executor.state.status is DeploymentStatus.PAUSED
        saved = DeploymentState.load("test-1")
        assert [s.status for s in saved.steps] == [StepStatus.PAUSED]
    finally:
        holder.kill()
        holder.wait()


def test_unrecovered_step_ends_failed_with_reason_never_completed(tmp_path: Path) -> None:
    plan = Plan(
        "refused",
        (
            Step("first", commands=("true",)),
            Step(
                "api",
                commands=(
                    'echo "curl: (7) Failed to connect to 127.0.0.1 port 9: Connection refused" >&2;'
                    " exit 7",
                ),
            ),
            Step("never", commands=(f"touch {tmp_path / 'never-ran'}",)),
        ),
    )
    strategies = {k: v for k, v in registry().items() if k != "manual_intervention"}
    executor, _ = _executor(plan, strategies=strategies, max_retries=2)
    with pytest.raises(RecoveryExhausted) as info:
        executor.run()
    state = DeploymentState.load("test-1")
    assert state.status is DeploymentStatus.FAILED
    assert "step api failed (connection_refused" in (state.reason or "")
    assert str(info.value) == state.reason
    assert [s.status for s in state.steps] == [
        StepStatus.DONE,
        StepStatus.FAILED,
        StepStatus.PENDING,
    ]
    assert not (tmp_path / "never-ran").exists()


def test_step_that_recovers_after_a_marker_appears(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    # fails with a transient network error until the marker exists; retry_with_backoff's wait
    # happens on the fake clock while a real background process creates the marker
    subprocess.Popen(["sh", "-c", f"sleep 0.3; touch {marker}"])
    plan = Plan(
        "flaky",
        (
            Step(
                "download",
                commands=(
                    f'test -e {marker} || {{ sleep 0.5; echo "Read timed out. (read timeout=15)" >&2; '
                    "exit 1; }",
                ),
            ),
        ),
    )
    executor, _clock = _executor(plan)
    state = executor.run()
    assert state.status is DeploymentStatus.COMPLETED
    assert state.steps[0].recoveries == ["retry_with_backoff"]


def test_retry_with_backoff_waits_the_backoff_schedule_and_no_more(tmp_path: Path) -> None:
    """The executor waits its backoff before each re-run; retry_with_backoff adds no wait of its
    own (it used to sleep 2 s more on every retry: 2 ** the attempt it was never told)."""
    runs = tmp_path / "runs"
    plan = Plan(
        "flaky",
        (
            Step(
                "download",
                commands=(
                    f"echo x >> {runs}; [ $(wc -l < {runs}) -gt 2 ] || "
                    '{ echo "Read timed out. (read timeout=15)" >&2; exit 1; }',
                ),
            ),
        ),
    )
    executor, clock = _executor(plan)
    executor.backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    schedule = Backoff(base=1.0, cap=60.0, rng=random.Random(7))
    state = executor.run()
    assert state.status is DeploymentStatus.COMPLETED
    assert state.steps[0].recoveries == ["retry_with_backoff", "retry_with_backoff"]
    assert clock.sleeps == [schedule.delay(1), schedule.delay(2)]
    assert clock.now() == pytest.approx(sum(clock.sleeps))


def test_a_recovery_is_recorded_with_the_tool_detection_named(tmp_path: Path) -> None:
    """The knowledge base keeps the context the ranker learns under: the executor's context and
    the tool a rule's ``tool`` group named, so a ranker built from the KB sees what it saw."""
    marker = tmp_path / "ready"
    rules = RuleSet()
    rules.add(
        ErrorPattern(
            "curl_timeout",
            r"(?P<tool>curl): \(28\) Operation timed out",
            "network_timeout",
            "retry_with_backoff",
        )
    )
    plan = Plan(
        "flaky",
        (
            Step(
                "download",
                commands=(
                    f'test -e {marker} || {{ touch {marker}; echo "curl: (28) Operation timed '
                    'out after 15001 milliseconds" >&2; exit 1; }',
                ),
            ),
        ),
    )
    with KnowledgeBase.open(tmp_path / "kb.sqlite") as kb:
        kb.start_deployment("test-1", None, "localhost", "flaky")
        executor, _clock = _executor(
            plan,
            advisor=Ranker(ListHistory(), rules, explore=0.0),
            sinks=[KnowledgeRecorder(kb)],
        )
        executor.context = {"host": "localhost"}
        assert executor.run().status is DeploymentStatus.COMPLETED
        [past] = kb.past_outcomes()
        [exported] = [r for r in iter_export(kb, keep_hosts=True) if r["type"] == "attempt"]
    assert exported["context"] == {"host": "localhost", "tool": "curl"}  # the step is a field
    assert exported["step"] == "download"
    assert (past.strategy, past.outcome) == ("retry_with_backoff", "recovered")
    assert past.context == {"host": "localhost", "step": "download", "tool": "curl"}


def test_done_steps_are_skipped_by_their_check(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    plan = Plan(
        "idem",
        (
            Step(
                "make",
                commands=(f"echo x >> {counter}; mkdir -p {tmp_path}/d",),
                check=f"test -d {tmp_path}/d",
            ),
        ),
    )
    _executor(plan, dep_id="a")[0].run()
    state = _executor(plan, dep_id="b")[0].run()
    assert state.steps[0].status is StepStatus.SKIPPED
    assert counter.read_text().count("x") == 1


def test_verification_failure_is_a_failure(tmp_path: Path) -> None:
    plan = Plan("verify", (Step("write", commands=("true",), verify=f"test -e {tmp_path}/no"),))
    strategies = {k: v for k, v in registry().items() if k != "manual_intervention"}
    executor, _ = _executor(plan, strategies=strategies, max_retries=1)
    with pytest.raises(RecoveryExhausted, match="verification failed"):
        executor.run()


def test_a_fix_that_failed_once_is_demoted_then_retried(tmp_path: Path) -> None:
    """Noise: the right fix fails the first time; it is not retried first, but it is retried
    (after the others) within the attempt budget, and the deployment completes."""
    from aideploy.core.strategies import CATALOGUE
    from aideploy.engine.recovery import StrategyContext
    from aideploy.knowledge.rules import ErrorPattern
    from aideploy.steps.strategies import Recovery

    applied = tmp_path / "applied"
    ready = tmp_path / "ready"

    def flaky_fix(ctx: StrategyContext) -> bool:
        count = int(applied.read_text()) + 1 if applied.exists() else 1
        applied.write_text(str(count))
        if count >= 2:
            ready.touch()
        return True

    table = GuideTable(
        [
            ErrorPattern(
                "flaky", r"FLAKY-ERROR", "permission_denied", "npm_user_prefix", "medium", "x"
            )
        ]
    )
    plan = Plan(
        "noise", (Step("s", commands=(f"test -e {ready} || {{ echo FLAKY-ERROR >&2; exit 1; }}",)),)
    )
    strategies = {
        **registry(),
        # a stand-in for the catalogue's npm_user_prefix whose first application does not fix it
        "npm_user_prefix": Recovery(CATALOGUE["npm_user_prefix"], flaky_fix),
    }
    executor, _ = _executor(plan, strategies=strategies, max_retries=3)
    executor.advisor = table
    state = executor.run()
    assert state.status is DeploymentStatus.COMPLETED
    assert state.steps[0].recoveries == ["npm_user_prefix", "npm_user_prefix"]
    assert applied.read_text() == "2"


def test_the_advisor_is_built_only_when_a_step_fails(tmp_path: Path) -> None:
    from aideploy.engine.recovery import LazyAdvisor

    built: list[int] = []

    def factory() -> GuideTable:
        built.append(1)
        return GuideTable()

    plan = Plan("ok", (Step("fine", commands=("true",)),))
    executor, _ = _executor(plan)
    executor.advisor = lazy = LazyAdvisor(factory)
    executor.run()
    assert not lazy.built and built == []
    failing = Plan(
        "bad", (Step("boom", commands=("echo 'E: Unable to locate package zz' >&2; exit 100",)),)
    )
    executor, _ = _executor(failing, dep_id="t2", max_retries=0)
    executor.advisor = lazy
    with pytest.raises(RecoveryExhausted):
        executor.run()
    assert lazy.built and built == [1]


def test_a_step_is_on_disk_done_before_the_next_one_acts_with_one_save_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []

    def look(ctx: object) -> None:  # what a crash at this moment would leave on disk
        seen.append([s.status.value for s in DeploymentState.load("test-save").steps])

    plan = Plan(
        name="saves",
        steps=(
            Step("a", "first", commands=("true",)),
            Step("b", "second", work=look),
            Step("c", "third", work=look),
        ),
    )
    saves: list[int] = []
    real_save = DeploymentState.save

    def counted(self: DeploymentState) -> None:
        saves.append(1)
        real_save(self)

    monkeypatch.setattr(DeploymentState, "save", counted)
    executor, _ = _executor(plan, dep_id="test-save")
    final = executor.run()
    assert final.status is DeploymentStatus.COMPLETED
    assert seen == [["done", "running", "pending"], ["done", "done", "running"]]
    on_disk = DeploymentState.load("test-save")
    assert [s.status for s in on_disk.steps] == [StepStatus.DONE] * 3
    assert len(saves) == 1 + len(plan.steps) + 1  # start, each step's start, the end
