"""Environment values never reach the target's process list (over SSH and in a session), secret
-looking or not: they travel on the command's input."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aideploy.core.redact import MASK, forget_secrets, register_secret
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.runner import Runner
from tests.support.sshd import SSHServer

SECRET = "pw-5e11a8c3-not-in-ps"


def _scan_cmdlines(stop: threading.Event, found: list[str]) -> None:
    while not stop.is_set():
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
            except OSError:
                continue
            if SECRET in cmdline:
                found.append(cmdline)
        time.sleep(0.01)


@pytest.mark.parametrize("session", [False, True], ids=["channel", "session"])
def test_secret_env_not_in_process_list(sshd: SSHServer, session: bool) -> None:
    forget_secrets()
    register_secret(SECRET)
    connector = sshd.connector()
    target = SessionConnector(connector) if session else connector
    target.connect()
    runner = Runner(target, timeout=30)
    stop, found = threading.Event(), []
    scanner = threading.Thread(target=_scan_cmdlines, args=(stop, found))
    scanner.start()
    try:
        result = runner.run(
            'sleep 1; test "$DB_PASSWORD" = "$EXPECTED" && echo same; echo "plain=$PLAIN"; '
            "printf 'q=%s|' \"$Q\"",
            # PLAIN is neither registered nor secret-looking, and still not in the process list
            env={
                "DB_PASSWORD": SECRET,
                "EXPECTED": SECRET,
                "PLAIN": f"{SECRET}-x",
                "Q": "a; b'c\nd",
            },
        )
        hidden_files = runner.run('ls "$HOME/.aideploy/env" | wc -l').stdout.strip()
        runner.close()
        left = runner.run('ls "$HOME/.aideploy/env" | wc -l').stdout.strip()
    finally:
        stop.set()
        scanner.join()
        target.close()
        forget_secrets()
    assert result.ok, result
    assert "same" in result.stdout and f"plain={MASK}-x" in result.stdout
    assert "q=a; b'c\nd|" in result.stdout
    assert found == [], found[:1]
    assert hidden_files == left == "0"  # nothing written to the target either
