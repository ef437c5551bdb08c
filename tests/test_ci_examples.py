"""The CI examples (examples/ci/) hold together: actionlint when installed, otherwise the
structure they rely on; every aideploy command in them parses; the host key is pinned, the key
comes from a secret, the knowledge base is cached between runs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from aideploy.cli.main import cli

CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
KB = ".aideploy/knowledge.db"


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _commands(script: str) -> Iterator[list[str]]:
    """The aideploy command lines of a shell script (continuation lines joined, up to a pipe or
    redirection)."""
    joined = script.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if not line.startswith("aideploy "):
            continue
        words = shlex.split(re.split(r"\s[|>]|\|\|", line)[0])
        yield words


def _parses(words: list[str]) -> None:
    """``aideploy WORDS`` is a valid command line (parsed by click, not run)."""
    group: click.Command = cli
    rest = words[1:]
    path: list[str] = []
    while isinstance(group, click.Group):
        ctx = click.Context(group)
        name = rest.pop(0)
        found = group.get_command(ctx, name)
        assert found is not None, f"{' '.join(words)}: no command {name!r}"
        group = found
        path.append(name)
    group.make_context(" ".join(path), rest).close()


def test_github_workflow_structure() -> None:
    if shutil.which("actionlint"):
        proc = subprocess.run(["actionlint", str(GITHUB)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _load(GITHUB)
    assert {"pull_request", "push"} <= set(data[True])  # YAML 1.1 reads the key `on` as True
    assert data["env"]["AIDEPLOY_KB"].endswith(KB)
    (job,) = data["jobs"].values()
    assert job["concurrency"]["cancel-in-progress"] is False
    steps = job["steps"]
    for step in steps:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:  # secrets reach a script through env:, never pasted into it
            assert "${{ secrets." not in step["run"], step["name"]
            assert "--accept-new-host-key" not in step["run"]
    uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}
    assert uses["actions/cache/restore"]["with"]["path"] == KB
    assert uses["actions/cache/save"]["with"]["path"] == KB
    keys = next(step for step in steps if "known_hosts" in step.get("run", ""))
    assert keys["env"] == {
        "SSH_KEY": "${{ secrets.DEPLOY_SSH_KEY }}",
        "KNOWN_HOSTS": "${{ secrets.DEPLOY_KNOWN_HOSTS }}",
    }
    assert "umask 077" in keys["run"]
    commands = [words for step in steps for words in _commands(step.get("run", ""))]
    assert any("--check" in words for words in commands)
    assert any("--auto" in words for words in commands)
    for words in commands:
        _parses(words)
    check = next(step for step in steps if "--check" in step.get("run", ""))
    assert "| tee" not in check["run"] or check.get("shell") == "bash"  # pipefail


def test_gitlab_job_structure() -> None:
    data = _load(GITLAB)
    assert data["stages"] == ["check", "deploy"]
    base = data[".aideploy"]
    caches = {c["key"]: c for c in base["cache"]}
    assert caches["aideploy-kb"]["paths"] == [KB] and caches["aideploy-kb"]["when"] == "always"
    assert data["variables"]["AIDEPLOY_KB"].endswith(KB)
    setup = "\n".join(base["before_script"])
    assert 'install -m 600 "$DEPLOY_SSH_KEY"' in setup
    assert 'install -m 600 "$DEPLOY_KNOWN_HOSTS" "$HOME/.ssh/known_hosts"' in setup
    for name in ("check", "deploy"):
        job = data[name]
        assert job["extends"] == ".aideploy" and job["rules"], name
        script = "\n".join(job["script"])
        assert "--accept-new-host-key" not in script
        commands = list(_commands(script))
        assert commands, name
        for words in [*commands, *_commands(setup)]:
            _parses(words)
    assert data["deploy"]["resource_group"] == "production"
    assert "--check" in "\n".join(data["check"]["script"])


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_examples_are_documented(path: Path) -> None:
    docs = (CI.parent.parent / "docs" / "github-actions.md").read_text(encoding="utf-8")
    assert f"examples/ci/{path.name}" in docs
