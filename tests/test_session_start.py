"""Starting the persistent session shell: a failed or silent start is retried with backoff
within the start budget; the last failure is a connection error (exit 3) saying what was
waited for."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.core.backoff import Backoff
from aideploy.core.clock import FakeClock
from aideploy.core.errors import SessionStartError
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.runner import Runner
from tests.support.cli import run_cli
from tests.support.sshd import SSHD, SSHServer, running_sshd

SHELL = "bash --noprofile --norc -s"


def _fails_first(times: int, counter: Path) -> str:
    """A shell command whose first ``times`` starts end at once, the next ones work."""
    return (
        f"sh -c 'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
        f'if [ "$n" -lt {times} ]; then echo "login refused" >&2; exit 1; fi; exec {SHELL}\''
    )


def _session(shell: str, clock: FakeClock, **options: float) -> SessionConnector:
    return SessionConnector(
        LocalConnector(),
        shell=shell,
        clock=clock,
        backoff=Backoff(base=1.0, cap=10.0, rng=random.Random(1)),
        **options,  # type: ignore[arg-type]
    )


def test_a_failed_start_is_retried_after_a_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    session = _session(_fails_first(2, tmp_path / "n"), clock)
    try:
        session.connect()
        assert Runner(session, timeout=10).run("echo hi").stdout == "hi"
    finally:
        session.close()
    assert (tmp_path / "n").read_text().strip() == "3"  # two failed starts, the third worked
    assert len(clock.sleeps) == 2 and 0.5 <= clock.sleeps[0] <= 1.0 <= clock.sleeps[1] <= 2.0
    assert session.shells_opened == 1


def test_a_shell_that_never_answers_ends_as_a_connection_error(tmp_path: Path) -> None:
    clock = FakeClock()
    session = _session("sleep 30", clock, start_timeout=0.3, start_attempts=3)
    with pytest.raises(SessionStartError) as caught:
        session.connect()
    session.close()
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert "waited 0.3s for the shell's ready line" in message
    assert "3 attempts" in message
    assert len(clock.sleeps) == 2


def test_the_budget_bounds_the_retries(tmp_path: Path) -> None:
    clock = FakeClock()
    session = _session(_fails_first(5, tmp_path / "n"), clock, start_budget=2.0)
    with pytest.raises(SessionStartError, match="login refused") as caught:
        session.connect()
    session.close()
    assert "the shell ended before it was ready" in str(caught.value)
    assert sum(clock.sleeps) < 2.0
    assert (tmp_path / "n").read_text().strip() == str(1 + len(clock.sleeps))


@pytest.fixture(scope="module")
def refusing_sshd() -> Iterator[SSHServer]:
    """An sshd that authenticates, then ends every command at once."""
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshd(extra=["ForceCommand echo no shell here >&2; exit 1"]) as server:
        yield server


def test_deploy_whose_session_never_starts_exits_with_the_connection_code(
    tmp_path: Path, refusing_sshd: SSHServer
) -> None:
    config = tmp_path / "ai_deployment_config.json"
    config.write_text(
        json.dumps(
            {
                "ssh": {
                    "known_hosts": str(refusing_sshd.known_hosts),
                    "connect_retries": 1,
                    "session_mode": True,
                },
                "server_profiles": {
                    "box": {
                        "hostname": refusing_sshd.host,
                        "port": refusing_sshd.port,
                        "username": refusing_sshd.user,
                        "key_file": str(refusing_sshd.client_key),
                    }
                },
            }
        )
    )
    kb = str(tmp_path / "kb.sqlite")
    proc = run_cli(
        tmp_path, "--config", str(config), "deploy", "--profile", "box", "--kb", kb, timeout=120
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "cannot start a session shell" in lines[0], proc.stderr
    assert "no shell here" in lines[0] and "3 attempts" in lines[0]
    assert "Traceback" not in proc.stderr
