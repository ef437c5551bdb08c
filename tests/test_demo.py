"""``aideploy demo`` for real: the sample app deployed with the stack plan into a throwaway host,
run the way ``./scripts/demo`` runs it but without a terminal (so it stops the host at once)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.throwaway import available, http_get


def _demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aideploy", "demo", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_demo_deploys_the_sample_app_says_where_it_answered_and_reports(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = _demo("--dir", str(directory))
    out = result.stdout
    assert result.returncode == 0, f"{out[-6000:]}\n{result.stderr[-3000:]}"
    assert f"Demo directory: {directory}" in out
    # the real deploy command ran, over SSH, with the stack plan
    assert re.search(r"aideploy --config \S+ deploy --server 127\.0\.0\.1 --port \d+", out)
    assert "--plan stack" in out and re.search(r"Deployment \S+ completed \(11 steps", out)
    # where it answered, through nginx
    answered = out.split("The app answered at:", 1)[1]
    urls = re.findall(r"https?://localhost:\d+/\S*", answered)
    http = [u for u in urls if u.startswith("http:")]
    assert {u.rsplit(":", 1)[1].split("/", 1)[1] for u in http} == {"", "api/health/"}, urls
    assert re.search(r"/api/health/  200 \{\"status\": \"ok\", \"database\": \"postgresql\"", out)
    assert "page: aideploy sample app" in out
    # then the report of the demo's knowledge base
    report = out.split("learn report --kb", 1)[1]
    assert "Deployments per week" in report and "100.0%" in report
    # kept in the demo directory: a completed deployment, the host's key and nothing else
    states = list((directory / "home" / "deployments").glob("*.json"))
    assert len(states) == 1 and json.loads(states[0].read_text())["status"] == "completed"
    assert (directory / "knowledge.db").is_file()
    port = re.search(r"sshd on 127\.0\.0\.1:(\d+)", out)
    assert port
    known = (directory / "known_hosts").read_text().splitlines()
    assert len(known) == 1 and known[0].startswith(f"[127.0.0.1]:{port.group(1)} ssh-ed25519 ")
    # no terminal: the host was stopped at once, with everything it served
    assert "stdin is not a terminal: stopping the throwaway host now." in out
    with pytest.raises(OSError):
        http_get(http[0], timeout=3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=3).close()


def test_demo_where_no_throwaway_host_can_run_says_so_in_one_line(tmp_path: Path) -> None:
    # a machine without util-linux's unshare: the tools the host needs, all but that one
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nsenter", "ssh-keygen", "chroot", "git"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = _demo("--dir", str(tmp_path / "demo"), env={"PATH": str(bin_dir)})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unshare not installed" in lines[0] or "needs root" in lines[0]
    assert "aideploy deploy --local --plan example" in lines[0]
    assert not (tmp_path / "demo").exists()
