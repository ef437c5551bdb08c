"""``--json`` on every listing command (stable keys, docs/json.md) and shell completion scripts
(docs/completion.md), through the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aideploy.knowledge.store import KnowledgeBase
from tests.support.cli import run_cli

LIST_KEYS = {
    "id", "plan", "status", "current_step", "total_steps", "errors", "host", "profile",
    "started", "ended", "reason",
}  # fmt: skip


def test_list_json_is_empty_then_lists_a_deployment_with_its_keys(tmp_path: Path) -> None:
    empty = run_cli(tmp_path, "list", "--json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []
    done = run_cli(tmp_path, "-q", "deploy", "--local", "--kb", str(tmp_path / "kb.db"))
    assert done.returncode == 0, done.stderr
    listed = json.loads(run_cli(tmp_path, "list", "--json").stdout)
    assert len(listed) == 1 and set(listed[0]) == LIST_KEYS
    entry = listed[0]
    assert entry["status"] == "completed" and entry["plan"] == "example"
    assert entry["current_step"] == entry["total_steps"] == 6 and entry["errors"] == 0
    assert entry["ended"] is not None and entry["reason"] is None
    status = json.loads(run_cli(tmp_path, "status", entry["id"], "--json").stdout)
    assert status["deployment_id"] == entry["id"] and len(status["steps"]) == 6


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    path = tmp_path / "kb.db"
    with KnowledgeBase.open(path) as store:
        store.start_deployment("d1", "prod", "web1", "stack")
        store.record_error("E: Unable to locate package nodejs", "package_not_found")
        store.record_attempt(
            "d1", "E: Unable to locate package nodejs", "package_not_found", "apt_update",
            "install_dependencies", "recovered", 3.5,
        )  # fmt: skip
        store.add_pattern(
            "held-port", r"port \d+ held", "port_in_use", "free_port", description="a held port"
        )
    return path


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (["learn", "signatures"], {"signature", "error_class", "count", "last_seen", "hash"}),
        (
            ["learn", "strategies"],
            {
                "strategy",
                "risk",
                "attempts",
                "success_rate",
                "mean_time_to_recovery",
                "origin",
                "trusted",
                "commands",
                "description",
            },
        ),
        (
            ["learn", "patterns", "list"],
            {"name", "error_class", "recovery", "severity", "trusted", "pattern", "description"},
        ),
    ],
)
def test_learn_listings_print_json_with_their_keys(
    tmp_path: Path, kb: Path, command: list[str], keys: set[str]
) -> None:
    proc = run_cli(tmp_path, *command, "--kb", str(kb), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows and all(set(row) == keys for row in rows)


def test_json_flag_is_format_json(tmp_path: Path, kb: Path) -> None:
    for command in (["learn", "report"], ["learn", "signatures"]):
        flag = run_cli(tmp_path, *command, "--kb", str(kb), "--json")
        fmt = run_cli(tmp_path, *command, "--kb", str(kb), "--format", "json")
        assert flag.returncode == fmt.returncode == 0, flag.stderr + fmt.stderr
        assert json.loads(flag.stdout) == json.loads(fmt.stdout)


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")],
)
def test_completion_script_is_produced(tmp_path: Path, shell: str, marker: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aideploy"],
        capture_output=True,
        text=True,
        env={**os.environ, "_AIDEPLOY_COMPLETE": f"{shell}_source"},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and "_AIDEPLOY_COMPLETE" in proc.stdout


def test_completion_completes_commands_and_choices(tmp_path: Path) -> None:
    def complete(words: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "aideploy"],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "_AIDEPLOY_COMPLETE": "bash_complete",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            },
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if "," in line]

    assert "learn" in complete("aideploy le")
    assert "suggest" in complete("aideploy learn s")
    assert set(complete("aideploy init --key-type ")) == {"ed25519", "rsa"}
