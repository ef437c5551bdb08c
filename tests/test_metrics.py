"""Metrics: computed from real deployments (executor on this machine, real logs), written as a
textfile and parsed back with the Prometheus client's parser, and served over real HTTP."""

from __future__ import annotations

import contextlib
import stat
import urllib.request
from collections.abc import Collection
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aideploy.core.clock import FakeClock
from aideploy.core.errors import StepFailed
from aideploy.core.recovery import Candidate, Failure, Outcome, Risk
from aideploy.core.result import Result
from aideploy.core.schema import convert
from aideploy.core.settings import DeploymentSettings
from aideploy.core.strategies import StrategySpec
from aideploy.engine import metrics
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.executor import Executor
from aideploy.engine.logs import DeploymentLog
from aideploy.engine.plan import Plan, Step
from aideploy.engine.recovery import StrategyContext
from aideploy.engine.runner import Runner
from aideploy.engine.state import DeploymentState, DeploymentStatus, list_states
from aideploy.services.config import parse_config
from aideploy.steps.strategies import Recovery


class Advisor:
    """Every failure is 'flaky'; proposes a strategy that does nothing, then one that fixes."""

    def __init__(self, order: tuple[str, ...]) -> None:
        self.order = order

    def detect(self, step: str, result: Result) -> Failure:
        return Failure(step, result, "flaky", "flaky-signature")

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        return [Candidate(name, 1.0, "test") for name in self.order if name not in exclude]

    def record(self, failure: Failure, strategy: str, outcome: Outcome, **kw: object) -> None:
        return None


def touch(name: str, marker: Path | None) -> Recovery:
    """A strategy that does nothing (no marker) or touches the marker that fixes the step."""

    def apply(ctx: StrategyContext) -> bool:
        if marker is not None:
            marker.touch()
        return True

    return Recovery(StrategySpec(name, Risk.LOW, "test strategy", ("flaky",)), apply)


def _deploy(dep_id: str, plan: Plan, advisor: Advisor, strategies: dict[str, Recovery]) -> None:
    state = DeploymentState(dep_id, plan.name, DeploymentStatus.PENDING, 0, len(plan.steps), {})
    connector = LocalConnector()
    executor = Executor(
        plan=plan,
        connector=connector,
        runner=Runner(connector, timeout=30),
        advisor=advisor,  # type: ignore[arg-type]
        strategies=strategies,
        state=state,
        settings=DeploymentSettings(max_retries=3, retry_delay=0.0),
        clock=FakeClock(),
    )
    with DeploymentLog(dep_id, "local machine"), contextlib.suppress(StepFailed):
        executor.run()


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))
    marker = tmp_path / "fixed"
    strategies = {"nothing": touch("nothing", None), "fix": touch("fix", marker)}
    ok_plan = Plan(
        "app",
        (
            Step("prepare", commands=("true",)),
            Step("build", commands=(f"test -e {marker} || {{ echo 'flaky!' >&2; exit 1; }}",)),
        ),
    )
    # first failure: 'nothing' fails, then 'fix' recovers -> not a first-try recovery
    _deploy("20250101-000001-aaaaaa", ok_plan, Advisor(("nothing", "fix")), strategies)
    marker.unlink()
    # second: 'fix' first -> a first-try recovery
    _deploy("20250101-000002-bbbbbb", ok_plan, Advisor(("fix", "nothing")), strategies)
    broken = Plan("app", (Step("migrate", commands=("echo 'no way' >&2; exit 3",)),))
    _deploy("20250101-000003-cccccc", broken, Advisor(()), strategies)
    return tmp_path / "home"


def _parse(text: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_snapshot_counts_real_deployments(deployments: Path) -> None:
    snap = metrics.snapshot()
    assert snap.by_status == {"completed": 2, "failed": 1}
    assert snap.errors == {"flaky": 4}  # 2 + 1 in the ok runs, 1 in the broken one
    assert snap.recoveries == {("nothing", "failed"): 1, ("fix", "recovered"): 2}
    assert (snap.attempted, snap.first_try) == (2, 1)
    assert snap.first_try_ratio == 0.5
    assert snap.last_success is False
    assert set(snap.step_durations) == {"prepare", "build"}  # a failed step has no end


def test_textfile_parses_back_with_the_prometheus_parser(deployments: Path) -> None:
    path = metrics.write_textfile()
    assert path == deployments / "metrics" / "aideploy.prom"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private unless metrics.textfile_mode
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    collector = metrics.write_textfile(path.parent / "c" / "x.prom", mode=0o644)
    assert stat.S_IMODE(collector.stat().st_mode) == 0o644  # what node_exporter needs
    collector.unlink()
    collector.parent.rmdir()
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind
    parsed = _parse(path.read_text())
    assert set(parsed) == set(metrics.FAMILIES)
    by_status = parsed["aideploy_deployments"]
    assert by_status[("aideploy_deployments", (("status", "completed"),))] == 2
    assert by_status[("aideploy_deployments", (("status", "failed"),))] == 1
    assert by_status[("aideploy_deployments", (("status", "paused"),))] == 0
    errors = parsed["aideploy_errors"]
    assert errors[("aideploy_errors_total", (("error_class", "flaky"),))] == 4
    rec = parsed["aideploy_recoveries"]
    assert rec[("aideploy_recoveries_total", (("outcome", "recovered"), ("strategy", "fix")))] == 2
    assert parsed["aideploy_first_try_recovery_ratio"] == {
        ("aideploy_first_try_recovery_ratio", ()): 0.5
    }
    durations = parsed["aideploy_deployment_duration_seconds"]
    assert durations[("aideploy_deployment_duration_seconds_count", ())] == 3
    assert durations[("aideploy_deployment_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    steps = parsed["aideploy_step_duration_seconds"]
    assert steps[("aideploy_step_duration_seconds_count", (("step", "build"),))] == 2
    assert parsed["aideploy_last_deployment_success"] == {
        ("aideploy_last_deployment_success", ()): 0.0
    }


def test_empty_home_still_writes_every_family(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path))
    target = tmp_path / "collector" / "aideploy.prom"
    metrics.write_textfile(target)
    parsed = _parse(target.read_text())
    assert "aideploy_deployments" in parsed
    assert (
        parsed["aideploy_deployment_duration_seconds"][
            ("aideploy_deployment_duration_seconds_count", ())
        ]
        == 0
    )


def test_try_write_textfile_never_raises(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = metrics.MetricsSettings(textfile=blocker / "sub" / "x.prom")
    assert metrics.try_write_textfile(settings) is None


def test_http_endpoint_serves_live_metrics(deployments: Path) -> None:
    with metrics.Endpoint(0) as endpoint:
        with urllib.request.urlopen(endpoint.url, timeout=5) as response:
            assert response.status == 200
            body = response.read().decode()
        parsed = _parse(body)
        assert (
            parsed["aideploy_deployments"][("aideploy_deployments", (("status", "completed"),))]
            == 2
        )
        # a new deployment shows up at the next scrape, no restart needed
        state = DeploymentState("20250101-000004-dddddd", "app", DeploymentStatus.RUNNING, 1, 2, {})
        state.save()
        with urllib.request.urlopen(endpoint.url, timeout=5) as response:
            parsed = _parse(response.read().decode())
        assert (
            parsed["aideploy_deployments"][("aideploy_deployments", (("status", "running"),))] == 1
        )


def test_serve_is_off_without_a_port_and_survives_a_busy_one() -> None:
    assert metrics.serve(metrics.MetricsSettings()) is None
    with metrics.Endpoint(0) as first:
        assert metrics.serve(metrics.MetricsSettings(http_port=first.port)) is None


def test_settings_section_validates_like_the_config() -> None:
    settings = convert({"http_port": 9108}, metrics.MetricsSettings, "metrics")
    assert settings.http_port == 9108 and settings.http_address == "127.0.0.1"
    with pytest.raises(Exception, match="between"):
        convert({"http_port": 0}, metrics.MetricsSettings, "metrics")
    parse_config({})  # the section is independent of the base schema


def test_an_abandoned_deployment_is_counted_by_status_but_has_no_duration(
    deployments: Path,
) -> None:
    failed = next(s for s in list_states() if s.status is DeploymentStatus.FAILED)
    failed.status = DeploymentStatus.ABANDONED
    failed.save()
    snap = metrics.snapshot()
    assert snap.by_status == {"completed": 2, "abandoned": 1}
    assert len(snap.deployment_durations) == 2  # its start-to-abandon time is no duration
    assert snap.errors == {"flaky": 4}  # what it met still counts
    parsed = _parse(metrics.write_textfile().read_text())
    by_status = parsed["aideploy_deployments"]
    assert by_status[("aideploy_deployments", (("status", "abandoned"),))] == 1
    durations = parsed["aideploy_deployment_duration_seconds"]
    assert durations[("aideploy_deployment_duration_seconds_count", ())] == 2
