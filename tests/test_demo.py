"""``aideploy demo`` for real: the sample app deployed with the stack plan into a throwaway host,
run the way ``./scripts/demo`` runs it but without a terminal (so it stops the host at once).
The demo injects a real fault (a stray server on nginx's port) before each of its two deploys:
the first recovers on the rules, the second on what the first taught the knowledge base."""

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
def test_demo_deploys_recovers_learns_says_where_it_answered_and_reports(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = _demo("--dir", str(directory))
    out = result.stdout
    assert result.returncode == 0, f"{out[-6000:]}\n{result.stderr[-3000:]}"
    assert f"Demo directory: {directory}" in out
    # the real deploy command ran, over SSH, with the stack plan
    assert re.search(r"aideploy --config \S+ deploy --server 127\.0\.0\.1 --port \d+", out)
    assert "--plan stack" in out
    # two deploys, each meeting the injected fault: a stray server on nginx's port
    first, second = out.split("[1/2] Fault injected", 1)[1].split("[2/2] nginx stopped", 1)
    for deploy in (first, second):
        assert re.search(
            r"error in validate_server: port_in_use: Address already in use: port \d+ is held "
            r"by: .*python3",
            deploy,
        )
        assert "recovery free_port: recovered" in deploy
        assert re.search(r"Deployment \S+ completed \(11 steps, 1 errors recovered\)", deploy)
    # the first recovery comes from the rules alone; the second one on the evidence of the first
    assert "recovery: free_port (rule 'eaddrinuse' (port_in_use) gives prior" in first
    assert "on class" not in first.split("recovery free_port: recovered")[0]
    assert re.search(r"recovery: free_port \(.*on class port_in_use: 1\.0 recovered", second)
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
    # what fixed what, and the first-try rate on the first and the second encounter
    assert re.search(r"\nport_in_use +free_port +2 +100\.0%", report)
    by_encounter = report.split("First-try recovery rate by encounter", 1)[1]
    assert re.search(r"port_in_use +free_port +1 +100\.0% +1 +100\.0%", by_encounter)
    # kept in the demo directory: the completed deployments, the host's key and nothing else
    states = list((directory / "home" / "deployments").glob("*.json"))
    assert len(states) == 2
    assert all(json.loads(state.read_text())["status"] == "completed" for state in states)
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
