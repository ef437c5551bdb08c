"""An error's ``debug.log`` entry (command line and traceback) and the ``--debug`` traceback on
stderr are redacted like every other output."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import run_cli

KEY = "dbg-canary-6c1f0a9e"
TOKEN = "dbgtok4e8d2b7a91"


def test_debug_log_and_traceback_hold_no_secret(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "--debug",
        "deploy",
        "--local",
        "--plan",
        "no-such-plan",
        "--set",
        f"DJANGO_SECRET_KEY={KEY}",
        "--set",
        f"APP_REPO=https://{TOKEN}@git.example.com/app.git",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" in result.stderr  # --debug shows it
    debug_log = tmp_path / "home" / "logs" / "debug.log"
    written = debug_log.read_text()
    assert "DJANGO_SECRET_KEY" in written and "git.example.com" in written  # argv is there
    for secret in (KEY, TOKEN):
        assert secret not in result.stdout + result.stderr
        assert secret not in written
