"""The deploy lock through the installed CLI: a held lock ends a deploy at once with exit code 6
(or after ``--wait``), ``unlock`` removes only a dead holder's lock (or with --force), such as
the one an interrupted deploy keeps, ``abandon`` ends a deployment for good and releases its lock.

The plan is tests/support/lock_plan.py: the stack plan's lock code around a step that waits for
a gate file; it runs on this machine (``--local``) with the lock in /var/lock."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli, start_cli

ROOT = Path(__file__).resolve().parent.parent
PLAN = "tests.support.lock_plan:plan"
ENV = {"PYTHONPATH": str(ROOT)}


@pytest.fixture
def app() -> Iterator[str]:
    name = f"locktest-{secrets.token_hex(4)}"
    yield name
    Path(f"/var/lock/aideploy-{name}.lock").unlink(missing_ok=True)


def lock_path(app: str) -> Path:
    return Path(f"/var/lock/aideploy-{app}.lock")


def hold(app: str, pid: int, host: str | None = None) -> dict[str, str]:
    """Write a lock as another deployment would have taken it."""
    holder = {
        "deployment_id": "20250101-000000-0a0b0c",
        "who": "someone",
        "from": host or socket.gethostname(),
        "pid": str(pid),
        "since": "2025-01-01T00:00:00Z",
    }
    lock_path(app).write_text(json.dumps(holder) + "\n")
    return holder


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def deploy(tmp_path: Path, app: str, *extra: str) -> list[str]:
    return [
        "--plain",
        "deploy",
        "--local",
        "--plan",
        PLAN,
        "--kb",
        str(tmp_path / "kb.sqlite"),
        "--set",
        f"APP_NAME={app}",
        *extra,
    ]


def read_until(stream: object, text: str) -> str:
    """Lines from a child's pipe until one contains ``text`` (the child's own pace, no sleep)."""
    seen = []
    for line in stream:  # type: ignore[attr-defined]
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never came; output was:\n{''.join(seen)}")


def test_a_held_lock_ends_the_deploy_at_once_with_code_6_naming_its_holder(
    tmp_path: Path, app: str
) -> None:
    hold(app, os.getpid())
    proc = run_cli(tmp_path, *deploy(tmp_path, app), env=ENV)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "20250101-000000-0a0b0c" in errors[0] and f"pid {os.getpid()}" in errors[0]
    assert "someone@" in errors[0] and "2025-01-01T00:00:00Z" in errors[0]
    out = proc.stdout + proc.stderr
    assert "recover" not in out.lower() and "retry" not in out.lower()  # no recovery attempted
    assert "[2/3]" not in out  # nothing after the lock step ran
    assert json.loads(lock_path(app).read_text())["pid"] == str(os.getpid())  # still theirs
    states = list((tmp_path / "home" / "deployments").glob("*.json"))
    state = json.loads(states[0].read_text())
    assert state["status"] == "failed" and "held by" in state["reason"]
    assert state["steps"][0]["attempts"] == 1 and state["steps"][0]["recoveries"] == []


def test_wait_waits_for_the_lock_then_deploys(tmp_path: Path, app: str) -> None:
    hold(app, os.getpid())
    gate = tmp_path / "gate"
    child = start_cli(
        tmp_path, *deploy(tmp_path, app, "--wait", "120", "--set", f"GATE={gate}"), env=ENV
    )
    try:
        assert child.stderr is not None and child.stdout is not None
        said = read_until(child.stderr, "waiting up to 120 s")
        assert "20250101-000000-0a0b0c" in said
        lock_path(app).unlink()  # the other deployment ends
        read_until(child.stdout, "[2/3] work")
        assert json.loads(lock_path(app).read_text())["pid"] == str(child.pid)  # ours now
        gate.touch()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, out + err
    assert not lock_path(app).exists()  # released at the end


def test_wait_gives_up_with_code_6_when_the_lock_stays_held(tmp_path: Path, app: str) -> None:
    hold(app, os.getpid())
    proc = run_cli(tmp_path, *deploy(tmp_path, app, "--wait", "0.5"), env=ENV)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "waiting up to 0.5 s" in proc.stderr + proc.stdout
    assert "held by deployment 20250101-000000-0a0b0c" in proc.stderr


def test_unlock_refuses_a_live_holder_and_removes_it_with_force(tmp_path: Path, app: str) -> None:
    hold(app, os.getpid())
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "alive" in proc.stderr
    assert lock_path(app).exists()
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed the deploy lock of deployment 20250101-000000-0a0b0c" in proc.stdout
    assert not lock_path(app).exists()
    audit = (tmp_path / "home" / "audit.jsonl").read_text().splitlines()
    actions = [(e["action"], e["result"]) for e in map(json.loads, audit)]
    assert actions == [("unlock", "refused"), ("unlock", "ok")]
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}")
    assert proc.returncode == 0 and "no deploy lock" in proc.stdout


def test_unlock_removes_a_dead_holders_lock_and_refuses_another_hosts(
    tmp_path: Path, app: str
) -> None:
    hold(app, dead_pid())
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not lock_path(app).exists()
    hold(app, os.getpid(), host="another-machine.example")
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}")
    assert proc.returncode == 6 and "cannot be told dead from here" in proc.stderr
    assert lock_path(app).exists()


def _start_held_deploy(tmp_path: Path, app: str) -> tuple[subprocess.Popen[str], str]:
    """A deploy that took the lock and waits at its gate; its deployment id."""
    child = start_cli(
        tmp_path, *deploy(tmp_path, app, "--set", f"GATE={tmp_path / 'gate'}"), env=ENV
    )
    assert child.stdout is not None
    head = read_until(child.stdout, "[2/3] work")
    deployment_id = head.split("Deployment ", 1)[1].split(":", 1)[0]
    assert json.loads(lock_path(app).read_text())["deployment_id"] == deployment_id
    return child, deployment_id


def test_an_interrupted_deploy_keeps_its_lock_until_unlock_sees_it_dead(
    tmp_path: Path, app: str
) -> None:
    child, deployment_id = _start_held_deploy(tmp_path, app)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, out + err
    status = run_cli(tmp_path, "status", deployment_id)
    assert "failed" in status.stdout and "interrupted" in status.stdout
    assert json.loads(lock_path(app).read_text())["pid"] == str(child.pid)  # kept (stack.md)
    proc = run_cli(tmp_path, "unlock", "--local", "--set", f"APP_NAME={app}")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # its holder is dead: no --force
    assert f"removed the deploy lock of deployment {deployment_id}" in proc.stdout
    assert not lock_path(app).exists()


def test_abandon_a_dead_deployment_releases_its_lock_and_resume_refuses_it(
    tmp_path: Path, app: str
) -> None:
    child, deployment_id = _start_held_deploy(tmp_path, app)
    try:
        proc = run_cli(tmp_path, "abandon", deployment_id)
        assert proc.returncode == 6, proc.stdout + proc.stderr  # its process is alive
        assert "still running" in proc.stderr
    finally:
        child.kill()  # dies holding the lock, its state still "running"
        child.communicate(timeout=60)
    assert lock_path(app).exists()
    proc = run_cli(tmp_path, "abandon", deployment_id, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "abandoned" in proc.stdout and "released" in proc.stdout
    assert not lock_path(app).exists()
    proc = run_cli(tmp_path, "resume", deployment_id, env=ENV)
    assert proc.returncode == 2 and "abandoned" in proc.stderr, proc.stderr
    listing = run_cli(tmp_path, "list")
    rows = [line.split() for line in listing.stdout.splitlines()]
    assert [deployment_id, "locked", "abandoned"] in [row[:3] for row in rows], listing.stdout
    status = run_cli(tmp_path, "status", deployment_id)
    assert status.stdout.startswith(f"deployment {deployment_id}: abandoned")
    assert "was running" in status.stdout
    proc = run_cli(tmp_path, "abandon", "no-such-deployment")
    assert proc.returncode == 1 and "no deployment" in proc.stderr
