"""State files: the same JSON text the standard library writes, every secret masked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aideploy.core.redact import MASK, forget_secrets, redact_obj, register_secret
from aideploy.core.statefile import state_json
from aideploy.engine.fleet_state import HostRun, RunState, RunStatus
from aideploy.engine.state import DeploymentState, DeploymentStatus, StepState, StepStatus


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def _state(reason: str, env_value: str) -> DeploymentState:
    return DeploymentState(
        deployment_id="20260101-000000-abcdef",
        plan="web",
        status=DeploymentStatus.FAILED,
        current_step=1,
        total_steps=2,
        server_info={"host": "web01", "port": 22},
        reason=reason,
        steps=[StepState("a", StepStatus.DONE), StepState("b", StepStatus.FAILED, attempts=2)],
        options={"env": {"DB_PASSWORD": env_value, "APP": reason}, "n": 1.5, "none": None},
    )


@given(reason=st.text(alphabet=st.characters(codec="ascii")), value=st.text(min_size=1))
def test_the_text_is_what_json_writes(reason: str, value: str) -> None:
    state = _state(reason, value)
    expected = json.dumps(redact_obj(asdict(state)), indent=2, default=str) + "\n"
    assert json.loads(state_json(state)) == json.loads(expected)
    plain = reason + value
    if plain.isascii() and plain.isprintable():  # json escapes the rest, msgspec need not
        assert state_json(state).decode() == expected


def test_secrets_are_masked_in_deployment_and_run_states() -> None:
    register_secret("pa55-w0rd-xyz")
    state = _state("failed: login pa55-w0rd-xyz refused", "anything")
    text = state_json(state).decode()
    assert "pa55-w0rd-xyz" not in text and MASK in text
    assert json.loads(text)["options"]["env"]["DB_PASSWORD"] == MASK
    run = RunState(
        run_id="run-20260101-000000-abcdef",
        plan="web",
        status=RunStatus.RUNNING,
        hosts=[HostRun(name="web01", target={"host": "h"}, env={"API_TOKEN": "t0k3n-value"})],
    )
    text = state_json(run).decode()
    assert "t0k3n-value" not in text and "_lock" not in text
    assert json.loads(text)["hosts"][0]["env"]["API_TOKEN"] == MASK
