"""Credentials in APP_REPO (a token as the user part, or user:token) reach a real git server
through the credential helper only: the server's git sees the URL without them, and the cache's
configured origin holds none."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest

from aideploy.core.redact import forget_secrets
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.plan import StepContext
from aideploy.engine.runner import Runner
from aideploy.steps.stack import download_application
from aideploy.steps.stack.common import DEFAULTS
from aideploy.steps.stack.download_application import Credentials, split_credentials
from tests.support.git_http import git_server, make_repo

TOKEN = "tokcanary" + "9f8e7d6c5b4a" * 2


@pytest.mark.parametrize(
    ("url", "clean", "found"),
    [
        ("https://T0KEN@git.example.com/a.git", "https://git.example.com/a.git", Credentials("", "T0KEN")),
        ("https://u:p%40w@h:8443/a.git", "https://h:8443/a.git", Credentials("p@w", "u")),
        ("https://git.example.com/a.git", "https://git.example.com/a.git", None),
        ("ssh://git@example.com/a.git", "ssh://git@example.com/a.git", None),
        ("git@example.com:org/a.git", "git@example.com:org/a.git", None),
    ],
)  # fmt: skip
def test_split_credentials(url: str, clean: str, found: Credentials | None) -> None:
    assert split_credentials(url) == (clean, found)


@pytest.mark.parametrize("form", ["user-part", "user-and-password"])
def test_url_credentials_go_through_the_helper_only(tmp_path: Path, form: str) -> None:
    forget_secrets()
    served = tmp_path / "served"
    make_repo(tmp_path / "tree", served, {"README": "hello\n"})
    user, password = (TOKEN, "") if form == "user-part" else ("deployer", TOKEN)
    with git_server(served, user, password) as server:
        userinfo = TOKEN if form == "user-part" else f"deployer:{TOKEN}"
        repo = server.url.replace("http://", f"http://{userinfo}@")
        lines: list[str] = []
        env = {
            **DEFAULTS,
            "APP_ROOT": str(tmp_path / "app"),
            "APP_REPO": repo,
            "DEPLOYMENT_ID": "20260101-000000-aaaaaa",
        }
        runner = Runner(LocalConnector(), on_line=lambda stream, line: lines.append(line))
        ctx = StepContext(runner=runner, connector=runner.connector, env=env, deployment_id="x")
        before = set(glob.glob("/tmp/aideploy-git.*"))
        result = download_application.work(ctx)
    forget_secrets()
    assert result.ok, result.output
    assert any(seen and seen.startswith("Basic ") for seen in server.seen)
    release = tmp_path / "app" / "releases" / "20260101-000000-aaaaaa"
    assert (release / "README").read_text() == "hello\n"
    config = (tmp_path / "app" / "shared" / "repo.git" / "config").read_text()
    assert server.url in config and TOKEN not in config
    assert TOKEN not in "\n".join(lines) + result.output + result.command
    assert set(glob.glob("/tmp/aideploy-git.*")) == before
