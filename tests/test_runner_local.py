"""The runner on the local connector: streaming, bounded memory, real timeouts, prompts, redaction."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from aideploy.core.redact import forget_secrets, register_secret
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.responders import apt_yes, dpkg_conffile, sudo_password
from aideploy.engine.runner import Runner


def test_exit_code_streams_and_result_fields() -> None:
    result = Runner(LocalConnector()).run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out", "err")
    assert not result.ok and not result.timed_out and result.duration >= 0


def test_argument_list_is_quoted() -> None:
    result = Runner(LocalConnector()).run(["printf", "%s", "a b; echo injected"])
    assert result.stdout == "a b; echo injected"


def test_lines_stream_before_the_command_ends() -> None:
    seen: list[tuple[str, float]] = []
    runner = Runner(LocalConnector(), on_line=lambda s, line: seen.append((line, time.monotonic())))
    started = time.monotonic()
    runner.run("echo first; sleep 1; echo second")
    assert [line for line, _ in seen] == ["first", "second"]
    assert seen[0][1] - started < 0.7  # first line arrived while the command was still sleeping


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    runner = Runner(LocalConnector())
    started = time.monotonic()
    result = runner.run(f"sleep 300 & echo $! > {pidfile}; wait", timeout=1)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "background child survived the timeout"


def test_prompts_answered() -> None:
    runner = Runner(LocalConnector(), responders=[apt_yes(), dpkg_conffile()])
    result = runner.run(
        "printf 'Do you want to continue? [Y/n] '; read a; echo \"apt:$a\"; "
        "printf '*** nginx.conf (Y/I/N/O/D/Z) [default=N] ? '; read b; echo \"dpkg:$b\"",
        timeout=10,
    )
    assert result.ok, result
    assert "apt:Y" in result.stdout and "dpkg:N" in result.stdout


def test_secret_answer_never_in_output_or_log(caplog: object) -> None:
    forget_secrets()
    register_secret("hunter2-very-secret")
    try:
        runner = Runner(LocalConnector(), responders=[sudo_password("hunter2-very-secret")])
        result = runner.run(
            "printf '[sudo] password for deploy: '; read p; echo \"got $p\"", timeout=10
        )
        assert "hunter2" not in result.stdout
        assert "got ***" in result.stdout
    finally:
        forget_secrets()


def test_interactive_prompt_asks_the_user() -> None:
    asked: list[str] = []

    def ask(text: str) -> str:
        asked.append(text)
        return "blue"

    runner = Runner(LocalConnector(), ask=ask, prompt_idle=0.2)
    result = runner.run("printf 'Favourite colour? '; read c; echo \"colour=$c\"", timeout=10)
    assert asked == ["Favourite colour? "]
    assert "colour=blue" in result.stdout


def test_huge_output_keeps_memory_bounded() -> None:
    runner = Runner(LocalConnector(), tail_bytes=64 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = runner.run("yes 'a line of build output that goes on and on' | head -c 100000000")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.ok and result.truncated
    assert len(result.stdout) <= 64 * 1024
    assert grown_mb < 20, f"memory grew by {grown_mb:.0f} MB for 100 MB of output"


def test_secrets_redacted_in_result_and_lines() -> None:
    lines: list[str] = []
    runner = Runner(LocalConnector(), on_line=lambda s, line: lines.append(line))
    result = runner.run(
        "echo PGPASSWORD=s3cr3t-pass; echo postgres://app:pw-in-url@db/app; "
        "echo token ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    )
    text = result.stdout + "\n".join(lines)
    for secret in ("s3cr3t-pass", "pw-in-url", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"):
        assert secret not in text


def test_environment_values_are_not_shell_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = Runner(LocalConnector()).run(
        'echo "$VALUE"', env={"VALUE": f"x; touch {marker}; $(touch {marker})"}
    )
    assert result.ok and not marker.exists()
    assert os.environ.get("VALUE") is None
