"""Two controllers, one PostgreSQL knowledge base: two fleet runs started at the same time through
the installed CLI, each over its own real sshd hosts and with its own ``AIDEPLOY_HOME``, both
recording into one PostgreSQL database. Every host's steps fail (the same error text on every
host, so both runs update the same signature rows at once) and recover. Afterwards every
recovery outcome each run's deployment states recorded is in the knowledge base exactly once,
and the knowledge base's counts add up to what the two runs did."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.cli import start_cli
from tests.support.sshd import SSHD, SSHServer, fleet_config, running_sshds

pytest_plugins = ["tests.support.postgres"]

HOSTS_PER_RUN = 2

PLAN = """
name = "twocontrollers"

[env]
ROOT = "/nonexistent"

[[steps]]
name = "prepare"
commands = ['mkdir -p "$ROOT"']

[[steps]]
name = "fetch"
# fails once per host the way a slow mirror does, then works
commands = ['''if [ ! -e "$ROOT/fetch-once" ]; then touch "$ROOT/fetch-once"; echo "curl: (28) Connection timed out after 5001 milliseconds" >&2; exit 28; fi''']

[[steps]]
name = "assets"
# the same failure on a second step
commands = ['''if [ ! -e "$ROOT/assets-once" ]; then touch "$ROOT/assets-once"; echo "curl: (28) Connection timed out after 5001 milliseconds" >&2; exit 28; fi''']

[[steps]]
name = "install"
commands = ['touch "$ROOT/marker"']
"""


@pytest.fixture(scope="module")
def four_hosts() -> Iterator[list[SSHServer]]:
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    with running_sshds(2 * HOSTS_PER_RUN) as servers:
        yield servers


def _controller(work: Path, name: str, servers: list[SSHServer]) -> list[str]:
    """A controller's directory (its ``home`` is its ``AIDEPLOY_HOME``) and the CLI arguments of
    its fleet run over ``servers``."""
    work.mkdir()
    config = fleet_config(work, servers)
    lines = []
    for index, server in enumerate(servers, 1):
        root = work / f"root{index}"
        lines.append(
            f'[hosts.{name}{index}]\nhost = "{server.host}"\nport = {server.port}\n'
            f'user = "{server.user}"\nkey_file = "{server.client_key}"\n'
            f'vars = {{ ROOT = "{root}" }}\n'
        )
    inventory = work / "fleet.toml"
    inventory.write_text("".join(lines))
    plan = work / "plan.toml"
    plan.write_text(PLAN)
    return [
        "--config", str(config), "deploy", "--inventory", str(inventory), "--plan", str(plan),
        "--forks", str(HOSTS_PER_RUN),
    ]  # fmt: skip


def _recorded_outcomes(home: Path) -> dict[str, Counter[tuple[str, str, str]]]:
    """Each deployment of a controller's home: its recovery outcomes as (step, strategy,
    outcome), counted."""
    found: dict[str, Counter[tuple[str, str, str]]] = {}
    for path in sorted((home / "deployments").glob("*.json")):
        state = json.loads(path.read_text())
        found[state["deployment_id"]] = Counter(
            (step["name"], entry["strategy"], entry["outcome"])
            for step in state["steps"]
            for entry in step.get("history", [])
            if entry["kind"] == "outcome"
        )
    return found


def test_two_concurrent_fleet_runs_lose_no_outcome(
    tmp_path: Path, four_hosts: list[SSHServer], postgres_db: str
) -> None:
    env = {"AIDEPLOY_KB": postgres_db}
    works = {"east": tmp_path / "east", "west": tmp_path / "west"}
    args = {
        name: _controller(work, name, four_hosts[i * HOSTS_PER_RUN : (i + 1) * HOSTS_PER_RUN])
        for i, (name, work) in enumerate(works.items())
    }
    procs = {name: start_cli(works[name], *args[name], env=env) for name in works}
    outputs: dict[str, tuple[str, str]] = {}
    for name, proc in procs.items():
        try:
            outputs[name] = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for other in procs.values():
                other.kill()
            raise
    for name, proc in procs.items():
        out, err = outputs[name]
        assert proc.returncode == 0, f"{name}: {out}{err}"
        assert "Traceback" not in err
        for index in range(1, HOSTS_PER_RUN + 1):
            assert (works[name] / f"root{index}" / "marker").exists()

    states: dict[str, Counter[tuple[str, str, str]]] = {}
    for name, work in works.items():
        found = _recorded_outcomes(work / "home")
        assert len(found) == HOSTS_PER_RUN, name
        states.update(found)
    # every host met the failure on both steps and recovered from it
    for deployment_id, outcomes in states.items():
        recovered = {step for (step, _, outcome) in outcomes if outcome == "recovered"}
        assert recovered == {"fetch", "assets"}, (deployment_id, outcomes)

    engine = sa.create_engine(postgres_db)
    try:
        with engine.connect() as db:
            rows = db.execute(
                sa.text("SELECT deployment_id, step, strategy, outcome FROM recovery_attempts")
            ).all()
            deployments = dict(db.execute(sa.text("SELECT id, status FROM deployments")).all())
            spans = db.execute(sa.text("SELECT id, started_at, ended_at FROM deployments")).all()
            signatures = db.execute(
                sa.text("SELECT hash, count, encounters FROM error_signatures")
            ).all()
            encounters = db.execute(
                sa.text("SELECT encounter FROM recovery_attempts WHERE encounter IS NOT NULL")
            ).scalars()
            numbers = sorted(encounters)
            keys = db.execute(sa.text("SELECT count(DISTINCT record_key) FROM recovery_attempts"))
            distinct_keys = keys.scalar_one()
    finally:
        engine.dispose()

    in_kb: dict[str, Counter[tuple[str, str, str]]] = {}
    for deployment_id, step, strategy, outcome in rows:
        in_kb.setdefault(deployment_id, Counter())[(step, strategy, outcome)] += 1
    # exactly once: per deployment the same multiset of outcomes, none missing, none doubled
    assert in_kb == states
    assert distinct_keys == len(rows) == sum(sum(c.values()) for c in states.values())
    assert set(deployments) == set(states)
    assert set(deployments.values()) == {"succeeded"}
    # the two runs did overlap: each run's deployments started before the other's ended
    runs = {
        name: [s for s in spans if s[0] in _recorded_outcomes(work / "home")]
        for name, work in works.items()
    }
    east, west = runs["east"], runs["west"]
    assert min(s[1] for s in east) < max(s[2] for s in west)
    assert min(s[1] for s in west) < max(s[2] for s in east)
    # one signature (the same error on every host of both runs), counted once per deployment
    # that met it; each deployment's failure took its own encounter number, none given twice
    hosts = 2 * HOSTS_PER_RUN
    assert len(signatures) == 1
    assert signatures[0][1:] == (hosts, hosts)
    assert numbers == list(range(1, hosts + 1))
