"""A fleet run through the installed CLI against three real sshd servers on loopback, each host
with its own root directory: rolling batches of one, the health gate stopping the rollout with
the documented exit code and summary, ``status RUN`` per host, ``logs RUN --host``, and
``resume RUN`` finishing only the hosts that did not."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.core.errors import RolloutStopped
from tests.support.cli import run_cli
from tests.support.sshd import SSHD, SSHServer, fleet_config, running_sshds

PLAN = """
name = "fleetdemo"
health = 'test ! -e "$ROOT/unhealthy" && test -s "$ROOT/app/marker"'

[env]
ROOT = "/nonexistent"

[[steps]]
name = "prepare"
commands = ['mkdir -p "$ROOT/app"']

[[steps]]
name = "fetch"
# fails once per host the way a slow mirror does, then works
commands = ['''if [ ! -e "$ROOT/fetched-once" ]; then touch "$ROOT/fetched-once"; echo "curl: (28) Connection timed out after 5001 milliseconds" >&2; exit 28; fi; echo fetched''']

[[steps]]
name = "install"
commands = ['echo "$SITE" > "$ROOT/app/marker"']
"""


@pytest.fixture(scope="module")
def three_hosts() -> Iterator[list[SSHServer]]:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshds(3) as servers:
        yield servers


def _setup(tmp_path: Path, servers: list[SSHServer]) -> tuple[Path, Path, Path, list[Path]]:
    config = fleet_config(tmp_path, servers)
    roots = []
    lines = ['[profiles.prod]\nSITE = "shop"\n', '[groups.web]\nprofile = "prod"\nhosts = [']
    lines.append(", ".join(f'"web{i}"' for i in range(1, 4)) + "]\n")
    for index, server in enumerate(servers, 1):
        root = tmp_path / f"root{index}"
        root.mkdir()
        roots.append(root)
        lines.append(
            f'[hosts.web{index}]\nhost = "{server.host}"\nport = {server.port}\n'
            f'user = "{server.user}"\nkey_file = "{server.client_key}"\n'
            f'vars = {{ ROOT = "{root}" }}\n'
        )
    inventory = tmp_path / "fleet.toml"
    inventory.write_text("".join(lines))
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    return config, inventory, plan, roots


def test_rollout_stops_at_an_unhealthy_host_and_resume_finishes(
    tmp_path: Path, three_hosts: list[SSHServer]
) -> None:
    config, inventory, plan, roots = _setup(tmp_path, three_hosts)
    (roots[1] / "unhealthy").write_text("fault")
    kb = tmp_path / "kb.db"
    env = {"AIDEPLOY_KB": str(kb)}
    listed = run_cli(tmp_path, "inventory", "list", "-i", str(inventory), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [h["host"] for h in json.loads(listed.stdout)["hosts"]] == ["web1", "web2", "web3"]

    first = run_cli(
        tmp_path,
        "--config",
        str(config),
        "deploy",
        "--inventory",
        str(inventory),
        "--group",
        "web",
        "--plan",
        str(plan),
        "--forks",
        "3",
        "--batch",
        "1",
        env=env,
    )
    assert first.returncode == RolloutStopped.exit_code, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    rows = {line.split()[0]: line.split()[1] for line in first.stdout.splitlines()[-6:] if line}
    assert rows.get("web1") == "ok" and rows.get("web2") == "unhealthy"
    assert rows.get("web3") == "pending", first.stdout
    assert "stopped after batch 2/3" in first.stdout
    assert (roots[0] / "app" / "marker").read_text() == "shop\n"
    assert not (roots[2] / "app").exists()  # the rollout stopped before host 3
    run_id = next(w for w in first.stderr.split() if w.startswith("run-"))

    status = run_cli(tmp_path, "status", run_id, env=env)
    assert status.returncode == 0
    assert "web2: unhealthy" in status.stdout and "web3: pending" in status.stdout
    data = json.loads(run_cli(tmp_path, "status", run_id, "--json", env=env).stdout)
    hosts = {h["name"]: h for h in data["hosts"]}
    # what host 1 learned (the transient fetch failure's fix) was tried first on host 2
    learned = hosts["web1"]["learned"]
    assert len(learned) == 1, hosts["web1"]
    strategy = learned[0].split(" -> ")[1]
    assert hosts["web2"]["recoveries"] == [f"fetch: {strategy} recovered"]
    assert learned[0] in first.stdout

    logs = run_cli(tmp_path, "logs", run_id, "--host", "web2", env=env)
    assert logs.returncode == 0, logs.stderr
    assert "fetch" in logs.stdout and hosts["web2"]["deployment_id"] in logs.stdout
    assert hosts["web1"]["deployment_id"] not in logs.stdout  # no other host's lines
    nohost = run_cli(tmp_path, "logs", run_id, env=env)
    assert nohost.returncode == 2 and "--host" in nohost.stderr

    (roots[1] / "unhealthy").unlink()
    resumed = run_cli(tmp_path, "--config", str(config), "resume", run_id, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 of 3 hosts (web2, web3)" in resumed.stderr + resumed.stdout
    assert (roots[2] / "app" / "marker").read_text() == "shop\n"
    final = json.loads(run_cli(tmp_path, "status", run_id, "--json", env=env).stdout)
    assert final["status"] == "completed"
    assert [h["result"] for h in final["hosts"]] == ["ok", "ok", "ok"]
    # host 1 was not deployed again; host 2 kept its deployment (only re-checked)
    assert final["hosts"][0]["deployment_id"] == hosts["web1"]["deployment_id"]
    assert final["hosts"][1]["deployment_id"] == hosts["web2"]["deployment_id"]
    # everything the runs wrote (run and deployment states, logs, locks, the KB) is private
    written = [*(tmp_path / "home").rglob("*"), kb]
    assert any(p.parent.name == "runs" for p in written) and any(
        p.suffix == ".lock" for p in written
    )
    for path in written:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_inventory_check_reports_each_host(tmp_path: Path, three_hosts: list[SSHServer]) -> None:
    config, inventory, _plan, _roots = _setup(tmp_path, three_hosts)
    ok = run_cli(
        tmp_path, "--config", str(config), "inventory", "check", "-i", str(inventory), "--json"
    )
    assert ok.returncode == 0, ok.stderr
    results = json.loads(ok.stdout)
    assert [r["host"] for r in results] == ["web1", "web2", "web3"]
    assert all(r["reachable"] and r["os"] and r["connect_ms"] is not None for r in results)
    assert results[0]["fingerprint"] == three_hosts[0].host_key_fingerprint
    # a host whose key is not known is reported, and the command ends with code 3
    (tmp_path / "known_hosts").write_text(three_hosts[0].known_hosts_lines())
    bad = run_cli(tmp_path, "--config", str(config), "inventory", "check", "-i", str(inventory))
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "web2" in bad.stdout and "unknown" in bad.stdout
    assert "2 of 3 host(s) not reachable" in bad.stderr


def test_bad_fleet_options_are_one_line_errors(
    tmp_path: Path, three_hosts: list[SSHServer]
) -> None:
    config, inventory, plan, _roots = _setup(tmp_path, three_hosts)
    base = ("--config", str(config), "deploy", "--plan", str(plan))
    cases = [
        ((*base, "--inventory", str(inventory), "--batch", "0"), "--batch"),
        ((*base, "--inventory", str(inventory), "--max-fail", "ten"), "--max-fail"),
        ((*base, "--inventory", str(inventory), "--limit", "db*"), "matches no host"),
        ((*base, "--inventory", str(inventory), "--group", "nope"), "no such group"),
        ((*base, "--limit", "web1"), "need --inventory"),
        ((*base, "--inventory", str(inventory), "--server", "x"), "--server cannot"),
        ((*base, "--inventory", str(tmp_path / "nope.ini")), "no such inventory"),
        ((*base, "-i", str(inventory), "--secret-env", "FLEET_UNSET_X"), "FLEET_UNSET_X is not"),
        ((*base, "-i", str(inventory), "--domain", "bad domain"), "--domain"),
    ]
    for args, message in cases:
        proc = run_cli(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "home" / "runs").exists()  # nothing half-written
