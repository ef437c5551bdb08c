"""The SSH connection dropped mid-command (the sshd process serving it killed): aideploy
reconnects, finds the command by its marker on the host, and waits for it or stops its process
group; a step is never run twice at once."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

from aideploy.engine.runner import Runner
from tests.support.cli import run_cli
from tests.support.sshd import SSHServer


def _kill_server_side_when(ppid_file: Path) -> threading.Thread:
    """Once the command wrote its parent's pid (the sshd process serving the connection), kill
    that process with SIGKILL: the connection drops, the command keeps running."""

    def work() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = ppid_file.read_text().strip() if ppid_file.exists() else ""
            if text.isdigit():
                os.kill(int(text), signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_command_outliving_its_connection_is_waited_for(sshd: SSHServer, tmp_path: Path) -> None:
    log, ppid = tmp_path / "runs.log", tmp_path / "ppid"
    command = (
        f'echo start >> {log}; echo "$PPID" > {ppid}.tmp; mv {ppid}.tmp {ppid}; '
        f"sleep 1; echo end >> {log}"
    )
    with sshd.connector() as connector:
        killer = _kill_server_side_when(ppid)
        result = Runner(connector, timeout=60).run(command)
        killer.join(5)
        assert result.ok, result
        assert f"SSH connection to {sshd.host} lost after" in result.stderr
        assert "ended with exit 0" in result.stderr
        assert log.read_text().split() == ["start", "end"]  # ran once, to its end
        assert Runner(connector, timeout=10).run("echo again").stdout == "again"


def _config(tmp_path: Path, sshd: SSHServer) -> Path:
    path = tmp_path / "ai_deployment_config.json"
    path.write_text(
        json.dumps(
            {
                "ssh": {"known_hosts": str(sshd.known_hosts), "session_mode": False},
                "deployment": {"retry_delay": 0.1, "max_retries": 2},
                "server_profiles": {
                    "box": {
                        "hostname": sshd.host,
                        "port": sshd.port,
                        "username": sshd.user,
                        "key_file": str(sshd.client_key),
                    }
                },
            }
        )
    )
    return path


def test_a_step_whose_connection_dropped_is_stopped_then_retried_never_beside_itself(
    sshd: SSHServer, tmp_path: Path
) -> None:
    log, ppid, first = tmp_path / "runs.log", tmp_path / "ppid", tmp_path / "first"
    # the step's long command is a copy of sleep under a name of its own, found by ps
    sleeper = f"slp{secrets.token_hex(4)}"
    (tmp_path / sleeper).write_bytes(Path("/bin/sleep").read_bytes())
    (tmp_path / sleeper).chmod(0o755)
    plan = tmp_path / "plan.toml"
    work = (
        # a live (not zombie: a reaper may be slow) copy of the first run's command
        f"if ps -eo stat=,comm= | grep -v '^Z' | grep -qw {sleeper}; then "
        f"echo concurrent >> {log}; fi; "
        f"echo start >> {log}; if [ -e {first} ]; then exit 0; fi; touch {first}; "
        f'echo "$PPID" > {ppid}.tmp; mv {ppid}.tmp {ppid}; {tmp_path / sleeper} 600'
    )
    plan.write_text(
        f"name = 'dropped'\n[[steps]]\nname = 'long'\ntimeout = 4\ncommands = [{json.dumps(work)}]\n"
    )
    killer = _kill_server_side_when(ppid)
    proc = run_cli(
        tmp_path,
        "--config",
        str(_config(tmp_path, sshd)),
        "deploy",
        "--profile",
        "box",
        "--plan",
        str(plan),
        "--kb",
        str(tmp_path / "kb.sqlite"),
        "--auto",
        timeout=180,
    )
    killer.join(5)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # twice, one after the other
    assert log.read_text().split() == ["start", "start"], proc.stdout + proc.stderr
    table = subprocess.run(["ps", "-eo", "stat=,comm="], capture_output=True, text=True).stdout
    assert not [ln for ln in table.splitlines() if sleeper in ln and not ln.startswith("Z")]
    assert "lost after" in proc.stdout + proc.stderr and "process group was stopped" in (
        proc.stdout + proc.stderr
    )


def test_the_marker_lives_in_a_private_run_dir_and_reports_each_state(tmp_path: Path) -> None:
    from aideploy.engine.connectors import ownership

    def sh(script: str) -> str:
        env = {**os.environ, "HOME": str(tmp_path)}
        return subprocess.run(
            ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30
        ).stdout

    ended, running = ownership.new_command_id(), ownership.new_command_id()
    sh(ownership.owned_prefix(ended) + "exit 7")
    run_dir = tmp_path / ".aideploy" / "run"
    assert run_dir.stat().st_mode & 0o777 == 0o700
    status = ownership.parse_status(sh(ownership.status_command(ended)))
    assert status == ownership.RemoteStatus(ownership.RemoteState.EXITED, 7)
    assert not (run_dir / ended).exists()  # read once, removed
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        [
            "sh",
            "-c",
            ownership.owned_prefix(running) + f"while [ ! -e {gate} ]; do sleep 0.02; done",
        ],
        env={**os.environ, "HOME": str(tmp_path)},
        start_new_session=True,  # a group of its own, as sshd gives each command
    )
    try:
        deadline = time.monotonic() + 30
        marker = run_dir / running
        while not (marker.exists() and marker.read_text().strip()):
            assert time.monotonic() < deadline, "the command never wrote its marker"
            time.sleep(0.01)
        status = ownership.parse_status(sh(ownership.status_command(running)))
        assert status == ownership.RemoteStatus(ownership.RemoteState.RUNNING, proc.pid)
    finally:
        gate.touch()
        proc.wait(10)
    assert ownership.parse_status(sh(ownership.status_command(running))).value == 0
    assert ownership.parse_status("gone\n").state is ownership.RemoteState.GONE
    assert ownership.parse_status("running 1").state is ownership.RemoteState.GONE  # never pid 1
    assert ownership.parse_status("garbage").state is ownership.RemoteState.GONE


def test_in_session_mode_the_command_of_a_lost_shell_is_stopped(
    sshd: SSHServer, tmp_path: Path
) -> None:
    from aideploy.engine.connectors.session import SessionConnector

    ppid = tmp_path / "ppid"
    sleeper = f"slp{secrets.token_hex(4)}"
    (tmp_path / sleeper).write_bytes(Path("/bin/sleep").read_bytes())
    (tmp_path / sleeper).chmod(0o755)
    # the session shell's parent is the sshd process serving the connection
    command = (
        f'ps -o ppid= -p "$PPID" | tr -d " " > {ppid}.tmp; mv {ppid}.tmp {ppid}; '
        f"{tmp_path / sleeper} 600"
    )
    session = SessionConnector(sshd.connector())
    try:
        session.connect()
        killer = _kill_server_side_when(ppid)
        result = Runner(session, timeout=60).run(command)
        killer.join(5)
        assert not result.ok and result.exit_code is None
        assert f"SSH connection to {sshd.host} lost after" in result.stderr, result
        assert "was stopped" in result.stderr, result
        table = subprocess.run(["ps", "-eo", "stat=,comm="], capture_output=True, text=True)
        assert not [
            ln for ln in table.stdout.splitlines() if sleeper in ln and not ln.startswith("Z")
        ]
        assert Runner(session, timeout=30).run("echo again").stdout == "again"  # a new shell
    finally:
        session.close()
