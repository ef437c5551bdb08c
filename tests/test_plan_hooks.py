"""A plan's ``on_failed`` and ``on_resume`` hooks, run by real deployments on this machine (local
connector): ``on_failed`` once when a deployment ends FAILED, never when it pauses for a person;
``on_resume`` before a resume continues, and a failing one refuses the resume and changes nothing.
The stack plan's lock uses them (tests/test_stack_e2e.py shows that over SSH)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aideploy.core.errors import ManualInterventionRequired, StepFailed
from aideploy.core.result import Result
from aideploy.engine.plan import Plan, Step, StepContext
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepStatus
from aideploy.services import deploy
from aideploy.services.config import load_config
from aideploy.services.target import resolve_target


def _maybe_pause(ctx: StepContext) -> None:
    if Path(ctx.env["FLAGS"], "pause").exists():
        raise ManualInterventionRequired("a person has to look at this")


def _note(name: str) -> object:
    def hook(ctx: StepContext) -> Result:
        return ctx.run(f'echo "$DEPLOYMENT_ID" >> "$FLAGS/{name}"; test ! -e "$FLAGS/refuse"')

    return hook


def plan() -> Plan:
    return Plan(
        name="hooked",
        steps=(
            Step("first", commands=('echo first >> "$FLAGS/ran"',)),
            Step("second", commands=('echo second >> "$FLAGS/ran"; test ! -e "$FLAGS/fail"',)),
            Step("third", work=_maybe_pause),
        ),
        on_failed=_note("failed"),  # type: ignore[arg-type]
        on_resume=_note("resumed"),  # type: ignore[arg-type]
    )


@pytest.fixture
def flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))
    folder = tmp_path / "flags"
    folder.mkdir()
    return folder


def _request(flags: Path) -> deploy.DeployRequest:
    # no recovery attempts: a failing step ends the deployment FAILED at once
    path = flags.parent / "config.json"
    path.write_text('{"version": "1.0", "deployment": {"max_retries": 0}}')
    config = load_config(path)
    return deploy.DeployRequest(
        plan_spec=f"{__name__}:plan",
        target=resolve_target(config, local=True),
        config=config,
        env={"FLAGS": str(flags)},
        kb=str(flags.parent / "kb.sqlite"),
    )


def _start(flags: Path) -> tuple[deploy.DeployRequest, DeploymentState]:
    request = _request(flags)
    state = deploy.new_state(request, deploy.prepare_plan(request.plan_spec, request.env, "dry"))
    state.save()
    return request, state


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _failed(flags: Path) -> tuple[deploy.DeployRequest, DeploymentState]:
    """A deployment that ended FAILED in its second step."""
    (flags / "fail").touch()
    request, state = _start(flags)
    with pytest.raises(StepFailed):
        deploy.run(request, state, deploy.Operator())
    assert state.status is DeploymentStatus.FAILED
    return request, state


def test_failed_runs_on_failed_once_and_a_resume_runs_on_resume_first(flags: Path) -> None:
    request, state = _failed(flags)
    assert _lines(flags / "failed") == [state.deployment_id]
    assert _lines(flags / "resumed") == []

    (flags / "fail").unlink()
    loaded = DeploymentState.load(state.deployment_id)
    final = deploy.run(request, loaded, deploy.Operator())
    assert final.status is DeploymentStatus.COMPLETED
    assert _lines(flags / "resumed") == [state.deployment_id]
    assert _lines(flags / "failed") == [state.deployment_id]  # not again
    assert _lines(flags / "ran") == ["first", "second", "second"]


def test_paused_deployment_does_not_run_on_failed(flags: Path) -> None:
    (flags / "pause").touch()
    request, state = _start(flags)
    with pytest.raises(ManualInterventionRequired):
        deploy.run(request, state, deploy.Operator())
    assert state.status is DeploymentStatus.PAUSED
    assert not (flags / "failed").exists()


def test_a_failing_on_resume_refuses_the_resume_and_changes_nothing(flags: Path) -> None:
    request, state = _failed(flags)
    (flags / "fail").unlink()
    (flags / "refuse").touch()
    before = DeploymentState.load(state.deployment_id)
    with pytest.raises(StepFailed, match="cannot resume"):
        deploy.run(request, before, deploy.Operator())
    after = DeploymentState.load(state.deployment_id)
    assert after.status is DeploymentStatus.FAILED
    assert [s.status for s in after.steps][:1] == [StepStatus.DONE]
    assert after.current_step == 2
    assert _lines(flags / "ran") == ["first", "second"]  # no step ran again
