"""Secrets given by an inventory never reach any artefact of a fleet run: distinct canaries in a
host's variables (a different one per host), a group's variables, the ``all`` group's variables
(a password inside ``DATABASE_URL``), a profile's app settings (TOML) and a lower-case host
variable that is not a plan variable, in aideploy's TOML format and in Ansible INI and YAML
inventories. Two real sshd hosts deploy a plan that prints the secrets as bare values (no
``NAME=value`` for the name patterns to catch), fails once the way a slow mirror does so the
knowledge base records an outcome, and stops at a gate; ``resume RUN`` then writes the real
values into each host's app environment while the process list is sampled. No canary is found in
the run and deployment states, the per-host logs, the audit log, the metrics textfile, every table
of the knowledge base, an export, the HTML report, the console (with ``-vv``, ``status``,
``logs``, ``inventory list``) or the process list; the secrets kept for resume are gone once
every host is ok."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aideploy.core.errors import FleetFailed
from tests.support.canary import ProcessList, canary, hits, kb_dump
from tests.support.cli import run_cli
from tests.support.sshd import SSHD, SSHServer, fleet_config, running_sshds

PLAN = r"""
name = "fleetcanary"
health = 'test -s "$ROOT/app.env"'

[env]
ROOT = "/nonexistent"
SMTP_PASSWORD = ""

[[steps]]
name = "show"
# careless software: the secrets as bare values, then a transient failure (once per host)
commands = ['''
echo "connecting with $DB_PASSWORD, signing with $DJANGO_SECRET_KEY"
echo "database password ${DATABASE_URL#*//app:}"
echo "mail through $SMTP_PASSWORD"
if [ ! -e "$ROOT/failed-once" ]; then
  touch "$ROOT/failed-once"
  echo "curl: (28) Connection timed out after 5001 milliseconds ($DB_PASSWORD)" >&2
  exit 28
fi
''']

[[steps]]
name = "write_env"
commands = ['''
test -e "$ROOT/gate" || { echo "gate closed for $DB_PASSWORD" >&2; exit 3; }
umask 077
printf 'DB_PASSWORD=%s\nDJANGO_SECRET_KEY=%s\nDATABASE_URL=%s\nSMTP_PASSWORD=%s\n' \
  "$DB_PASSWORD" "$DJANGO_SECRET_KEY" "$DATABASE_URL" "$SMTP_PASSWORD" > "$ROOT/app.env"
sleep 1.5
''']
"""


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[list[SSHServer]]:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshds(2) as servers:
        yield servers


def _connection(server: SSHServer) -> dict[str, str]:
    return {
        "ansible_host": server.host,
        "ansible_port": str(server.port),
        "ansible_user": server.user,
        "ansible_ssh_private_key_file": str(server.client_key),
    }


def _toml(servers: list[SSHServer], roots: list[Path], c: dict[str, str]) -> str:
    text = (
        f'[profiles.prod]\nSMTP_PASSWORD = "{c["profile"]}"\n'
        f'[groups.all]\nvars = {{ DATABASE_URL = "postgres://app:{c["all"]}@db:5432/app" }}\n'
        f'[groups.web]\nhosts = ["web1", "web2"]\nprofile = "prod"\n'
        f'vars = {{ DJANGO_SECRET_KEY = "{c["group"]}" }}\n'
    )
    for n, (server, root) in enumerate(zip(servers, roots, strict=True), 1):
        text += (
            f'[hosts.web{n}]\nhost = "{server.host}"\nport = {server.port}\n'
            f'user = "{server.user}"\nkey_file = "{server.client_key}"\n'
            f'vars = {{ ROOT = "{root}", DB_PASSWORD = "{c[f"host{n}"]}", '
            f'vault_password = "{c[f"lower{n}"]}" }}\n'
        )
    return text


def _ini(servers: list[SSHServer], roots: list[Path], c: dict[str, str]) -> str:
    text = f"[all:vars]\nDATABASE_URL=postgres://app:{c['all']}@db:5432/app\n[web]\n"
    for n, (server, root) in enumerate(zip(servers, roots, strict=True), 1):
        words = [f"{k}={v}" for k, v in _connection(server).items()]
        words += [f"ROOT={root}", f"DB_PASSWORD={c[f'host{n}']}"]
        words.append(f"vault_password={c[f'lower{n}']}")
        text += f"web{n} " + " ".join(words) + "\n"
    return text + f"[web:vars]\nDJANGO_SECRET_KEY={c['group']}\n"


def _yaml(servers: list[SSHServer], roots: list[Path], c: dict[str, str]) -> str:
    hosts = {
        f"web{n}": {
            **_connection(server),
            "ROOT": str(root),
            "DB_PASSWORD": c[f"host{n}"],
            "vault_password": c[f"lower{n}"],
        }
        for n, (server, root) in enumerate(zip(servers, roots, strict=True), 1)
    }
    document = {
        "all": {
            "vars": {"DATABASE_URL": f"postgres://app:{c['all']}@db:5432/app"},
            "children": {"web": {"hosts": hosts, "vars": {"DJANGO_SECRET_KEY": c["group"]}}},
        }
    }
    return "---\n" + json.dumps(document, indent=2) + "\n"  # JSON is YAML


FORMATS: dict[str, tuple[str, Callable[[list[SSHServer], list[Path], dict[str, str]], str]]] = {
    "toml": ("fleet.toml", _toml),
    "ini": ("hosts.ini", _ini),
    "yaml": ("hosts.yml", _yaml),
}


@pytest.mark.parametrize("kind", list(FORMATS))
def test_no_inventory_canary_reaches_any_artefact(
    tmp_path: Path, two_hosts: list[SSHServer], kind: str
) -> None:
    c = {name: canary(i) for i, name in enumerate(
        ["host1", "host2", "group", "all", "profile", "lower1", "lower2"]
    )}  # fmt: skip
    if kind != "toml":  # Ansible inventories have no profiles
        c.pop("profile")
    config = fleet_config(tmp_path, two_hosts)
    roots = [tmp_path / "root1", tmp_path / "root2"]
    for root in roots:
        root.mkdir()
    name, write = FORMATS[kind]
    inventory = tmp_path / name
    inventory.write_text(write(two_hosts, roots, c))
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    kb = tmp_path / "kb.sqlite"
    outputs: list[str] = []
    with ProcessList() as processes:
        deploy = run_cli(
            tmp_path,
            "-vv",
            "--config",
            str(config),
            "deploy",
            "-i",
            str(inventory),
            "--group",
            "web",
            "--plan",
            str(plan),
            "--kb",
            str(kb),
            "--forks",
            "2",
        )
        outputs += [deploy.stdout, deploy.stderr]
        assert deploy.returncode == FleetFailed.exit_code, deploy.stdout + deploy.stderr
        assert "gate closed for ***" in deploy.stdout + deploy.stderr
        (run_file,) = (tmp_path / "home" / "runs").glob("run-*.json")
        run_id = run_file.stem
        for root in roots:
            (root / "gate").touch()
        resumed = run_cli(tmp_path, "-vv", "--config", str(config), "resume", run_id)
        outputs += [resumed.stdout, resumed.stderr]
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert processes.samples > 10
    # each host's app got its real values, not ***, from the resumed run
    database_url = f"postgres://app:{c['all']}@db:5432/app"
    for n, root in enumerate(roots, 1):
        assert (root / "failed-once").exists()  # the step failed once and was recovered
        assert (root / "app.env").read_text() == (
            f"DB_PASSWORD={c[f'host{n}']}\nDJANGO_SECRET_KEY={c['group']}\n"
            f"DATABASE_URL={database_url}\nSMTP_PASSWORD={c.get('profile', '')}\n"
        )
    status = json.loads(run_file.read_text())
    assert [h["result"] for h in status["hosts"]] == ["ok", "ok"]
    assert all(h["recoveries"] for h in status["hosts"]), status["hosts"]

    export, report = tmp_path / "export.jsonl", tmp_path / "report.html"
    for args in (
        ("learn", "export", "--kb", str(kb), str(export)),
        ("learn", "report-html", "--kb", str(kb), str(report)),
        ("status", run_id),
        ("status", run_id, "--json"),
        ("logs", run_id, "--host", "web1"),
        ("logs", run_id, "--host", "web2"),
        ("audit", "show"),
        ("inventory", "list", "-i", str(inventory), "--json"),
        ("inventory", "list", "-i", str(inventory)),
    ):
        done = run_cli(tmp_path, *args)
        assert done.returncode == 0, (args, done.stderr)
        outputs += [done.stdout, done.stderr]

    canaries = list(c.values())
    found: list[str] = []
    written = [p for p in (tmp_path / "home").rglob("*") if p.is_file()] + [export, report]
    assert any(p.suffix == ".prom" for p in written) and any(
        p.name == "audit.jsonl" for p in written
    )
    assert any(p.parent.name == "runs" for p in written)
    assert sum(1 for p in written if p.parent.name == "logs") >= 2  # one log per host at least
    for path in written:
        found += hits(path.read_bytes().decode("utf-8", "replace"), str(path), canaries)
    found += hits(kb_dump(kb), "knowledge base", canaries)
    found += hits("\n".join(outputs), "console", canaries)
    found += hits("\n".join(processes.seen), "process list", canaries)
    assert found == [], "\n".join(found)
    assert "connecting with ***" in kb_dump(kb)  # the failed step's output was recorded
