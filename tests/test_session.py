"""SessionConnector: one shell for many commands, over the local connector and a real sshd."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.responders import apt_yes, responder
from aideploy.engine.runner import Runner
from tests.support.sshd import SSHServer


@pytest.fixture(params=["local", "ssh"])
def session(request: pytest.FixtureRequest) -> Iterator[SessionConnector]:
    if request.param == "local":
        inner = LocalConnector()
    else:
        server: SSHServer = request.getfixturevalue("sshd")
        inner = server.connector()  # type: ignore[assignment]
    connector = SessionConnector(inner)
    connector.connect()
    try:
        yield connector
    finally:
        connector.close()


def pgrep(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def test_many_commands_run_in_one_shell(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    parents = {runner.run("echo $PPID").stdout for _ in range(70)}  # crosses FIFO batches
    assert len(parents) == 1
    assert parents == {str(session.shell_pid)}
    assert session.shells_opened == 1
    answered = Runner(session, responders=[apt_yes()], timeout=10).run(
        "printf 'Do you want to continue? [Y/n] '; read a; echo \"answer=$a\""
    )
    assert answered.stdout.endswith("answer=Y")
    fifos = [name for name in os.listdir(session.directory) if name.startswith("in.")]
    assert len(fifos) <= session.fifo_batch


def test_exit_codes_and_streams(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    result = runner.run("echo out; echo err >&2; exit 7")
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out", "err")
    assert runner.run("true").exit_code == 0
    assert runner.run("false").exit_code == 1
    assert runner.run("exit 300").exit_code == 44
    assert runner.run("this-command-does-not-exist-xyz").exit_code == 127
    assert runner.run("echo 'unterminated").exit_code == 2  # syntax error stays in its bash -c


def test_output_without_newline_and_large_output(session: SessionConnector) -> None:
    runner = Runner(session, timeout=20, tail_bytes=1 << 20)
    assert runner.run("printf abc").stdout == "abc"
    assert runner.run("printf 'x\\037y'").stdout == "x\x1fy"
    result = runner.run("seq 1 50000; seq 1 100 >&2")
    assert result.stdout.splitlines() == [str(i) for i in range(1, 50001)]
    assert result.stderr.splitlines()[-1] == "100"


def test_environment_does_not_leak_between_commands(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    value = 'it\'s a "value" with $dollar'
    assert runner.run('printf %s "$MY_VAR"', env={"MY_VAR": value}).stdout == value
    assert runner.run('echo "${MY_VAR-unset}"').stdout == "unset"
    runner.run("export LEAK=1; cd /; LEAK2=2")
    assert runner.run('echo "${LEAK-unset} ${LEAK2-unset}"').stdout == "unset unset"


def test_timeout_kills_the_command_and_the_session_survives(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    shell = session.shell_pid
    marker = f"3{secrets.randbelow(10**6):06d}"
    started = time.monotonic()
    result = runner.run(f"sleep {marker}1 & sleep {marker}2; wait", timeout=1)
    assert result.timed_out
    assert time.monotonic() - started < 6
    deadline = time.monotonic() + 3
    while pgrep(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pgrep(f"sleep {marker}") == []
    after = runner.run("echo alive")
    assert after.stdout == "alive" and after.exit_code == 0
    assert session.shell_pid == shell
    assert session.shells_opened == 1


def test_prompt_answer_goes_to_the_command_only(session: SessionConnector, tmp_path: Path) -> None:
    canary = tmp_path / "executed-by-the-session"
    runner = Runner(session, timeout=10, responders=[apt_yes()])
    result = runner.run("printf 'Do you want to continue? [Y/n] '; read a; echo \"answer=$a\"")
    assert result.ok and "answer=Y" in result.stdout
    sneaky = responder("name", r"Name: $", f"touch {canary}\n")
    result = runner.run("printf 'Name: '; read n; echo \"got $n\"", responders=[sneaky])
    assert result.stdout.endswith(f"got touch {canary}")
    # the answer was input for the command, never a command of the session
    assert not canary.exists()
    assert runner.run("echo next").stdout == "next"


def test_unanswered_reader_is_stopped_by_timeout(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    result = runner.run("read line; echo never", timeout=0.5)
    assert result.timed_out and "never" not in result.stdout
    assert runner.run("echo ok").stdout == "ok"


def test_session_reopens_after_the_shell_died(session: SessionConnector) -> None:
    runner = Runner(session, timeout=10)
    first = runner.run("echo $PPID").stdout
    old_directory = session.directory
    dead = runner.run("kill -9 $PPID")
    assert dead.exit_code is None
    result = runner.run("echo $PPID")
    assert result.ok
    assert result.stdout != first
    assert session.shells_opened == 2
    assert not os.path.exists(old_directory)


def test_private_directory_and_files(session: SessionConnector, tmp_path: Path) -> None:
    mode = os.stat(session.directory).st_mode
    assert stat.S_ISDIR(mode) and mode & 0o777 == 0o700
    target = tmp_path / "out.txt"
    session.write_file(str(target), b"hello\n", mode=0o640)
    assert target.read_bytes() == b"hello\n"
    assert target.stat().st_mode & 0o777 == 0o640
    copy = tmp_path / "copy.txt"
    session.get_file(str(target), copy)
    assert copy.read_bytes() == b"hello\n"
    session.put_file(copy, str(tmp_path / "put.txt"), mode=0o600)
    assert (tmp_path / "put.txt").stat().st_mode & 0o777 == 0o600


def test_close_removes_the_private_directory(sshd: SSHServer) -> None:
    connector = SessionConnector(sshd.connector())
    assert Runner(connector).run("true").ok
    directory = connector.directory
    assert os.path.isdir(directory)
    connector.close()
    deadline = time.monotonic() + 3
    while os.path.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(directory)


def test_bashrc_runs_once_per_session_not_per_command(sshd: SSHServer) -> None:
    runs = sshd.bashrc_runs
    runs.unlink(missing_ok=True)
    with sshd.connector(key_filename=sshd.keys["bashrc"]) as plain:
        for _ in range(3):
            assert Runner(plain).run("echo $FROM_BASHRC").stdout == "yes"
    assert len(runs.read_text().splitlines()) == 3
    runs.unlink()
    connector = SessionConnector(sshd.connector(key_filename=sshd.keys["bashrc"]))
    try:
        runner = Runner(connector)
        for _ in range(5):
            assert runner.run("echo $FROM_BASHRC").stdout == "yes"
    finally:
        connector.close()
    assert len(runs.read_text().splitlines()) == 1
