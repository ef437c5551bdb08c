"""``aideploy learn suggest`` on a knowledge base with recorded runs and deployment states on
disk; each suggestion cites its evidence; the config switch turns them off; the HTML report
shows them."""

from __future__ import annotations

import json
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aideploy.engine.state import DeploymentState, DeploymentStatus, StepState, StepStatus
from aideploy.knowledge.classes import ERROR_CLASSES
from aideploy.knowledge.store import KnowledgeBase
from aideploy.knowledge.suggest import PREVENTION, prevention
from tests.support.cli import run_cli

START = datetime(2026, 3, 2, 9, 0)
STEPS = ("validate_server", "install_dependencies", "configure_frontend", "final_verification")


def _record(kb: KnowledgeBase, index: int) -> None:
    """One deployment to web1: configure_frontend slows from 60 s to 100 s over the runs;
    apt_lock recovered in install_dependencies every other deployment."""
    at = START + timedelta(days=index)
    dep = f"d{index:02d}"
    kb.start_deployment(dep, "prod", "web1", "stack", at=at)
    memory = 900 - 20 * index
    durations = {
        "validate_server": 2.0,
        "install_dependencies": 5.0,
        "configure_frontend": 60.0 + 5 * index,
        "final_verification": 8.0,
    }
    for step, seconds in durations.items():
        tail = (
            f"server ok: Debian GNU/Linux 12, {memory} MB memory available"
            if step == ("validate_server")
            else "ok"
        )
        kb.record_step_run(dep, step, 1, 0, seconds, tail, False, at=at)
    if index % 2 == 0:
        kb.record_attempt(
            dep,
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process <n>",
            "apt_lock",
            "wait_for_apt_lock",
            "install_dependencies",
            "recovered",
            12.0,
            at=at,
        )
    kb.finish_deployment(dep, "completed", at=at + timedelta(minutes=3))


def _state(home: Path, index: int, env: dict[str, str]) -> None:
    state = DeploymentState(
        deployment_id=f"2026030{index}-090000-abcde{index}",
        plan="stack",
        status=DeploymentStatus.COMPLETED,
        current_step=len(STEPS),
        total_steps=len(STEPS),
        server_info={"hostname": "web1", "username": "root", "port": 22, "kind": "ssh"},
        start_time=(START + timedelta(days=index)).isoformat(),
        steps=[
            StepState(
                name,
                StepStatus.SKIPPED if name == "install_dependencies" else StepStatus.DONE,
            )
            for name in STEPS
        ],
    )
    state.options = {"env": env}
    state.save()


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("AIDEPLOY_HOME", str(home))
    kb_path = tmp_path / "kb.db"
    with KnowledgeBase.open(kb_path) as kb:
        for index in range(8):
            _record(kb, index)
    same = {"APP_REPO": "/srv/app.git", "APP_REF": "main"}
    for index in range(4):
        _state(home, index, same)
    _state(home, 4, {**same, "APP_REF": "v2"})  # changed inputs: not counted
    return kb_path


def _by_kind(document: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}
    for item in document["suggestions"]:  # type: ignore[attr-defined]
        found.setdefault(item["kind"], []).append(item)
    return found


def test_suggestions_cite_their_evidence(tmp_path: Path, recorded: Path) -> None:
    proc = run_cli(tmp_path, "learn", "suggest", "--kb", str(recorded), "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["schema"] == 1 and document["enabled"] is True
    kinds = _by_kind(document)
    assert set(kinds) == {"slow_step", "caching", "recurring_recovery", "resources"}

    slow = kinds["slow_step"][0]
    assert slow["subject"] == "configure_frontend"
    assert slow["figures"]["runs"] == 8 and slow["figures"]["mean_seconds"] == 77.5
    assert "getting slower" in slow["advice"] and "mean 77.5s" in slow["evidence"]

    caching = {c["subject"]: c for c in kinds["caching"]}
    # ran again in 3 pairs of deployments with the same variables; install_dependencies was
    # skipped then, and the deployment with a new APP_REF does not count
    assert set(caching) == {"validate_server", "configure_frontend", "final_verification"}
    assert caching["configure_frontend"]["figures"]["unchanged_runs"] == 3

    recurring = kinds["recurring_recovery"][0]
    assert recurring["subject"] == "apt_lock in install_dependencies"
    assert recurring["figures"]["recoveries"] == 4 and recurring["figures"]["deployments"] == 4
    assert recurring["advice"] == prevention()["apt_lock"]
    assert "by wait_for_apt_lock" in recurring["evidence"]

    memory = kinds["resources"][0]
    assert memory["subject"] == "web1" and memory["figures"]["min_memory_mb"] == 760

    text = run_cli(tmp_path, "learn", "suggest", "--kb", str(recorded))
    assert text.returncode == 0 and "evidence: recovered 4 times in 4 deployments" in text.stdout
    fewer = run_cli(tmp_path, "learn", "suggest", "--kb", str(recorded), "--min-evidence", "5")
    assert "recurring_recovery" not in fewer.stdout  # 4 deployments are not enough for 5


def test_the_config_switch_turns_them_off_here_and_in_the_html_report(
    tmp_path: Path, recorded: Path
) -> None:
    page = tmp_path / "on.html"
    proc = run_cli(tmp_path, "learn", "report-html", str(page), "--kb", str(recorded))
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert 'id="suggestions"' in html and "wait_for_apt_lock" in html

    config = tmp_path / "off.json"
    config.write_text(json.dumps({"ai_features": {"optimization_suggestions": False}}))
    off = run_cli(tmp_path, "--config", str(config), "learn", "suggest", "--kb", str(recorded))
    assert off.returncode == 0 and "off (ai_features.optimization_suggestions)" in off.stdout
    data = run_cli(
        tmp_path, "--config", str(config), "learn", "suggest", "--kb", str(recorded), "--json"
    )
    assert json.loads(data.stdout) == {"schema": 1, "enabled": False, "suggestions": []}
    page_off = tmp_path / "off.html"
    run_cli(tmp_path, "--config", str(config), "learn", "report-html", str(page_off), "--kb",
            str(recorded))  # fmt: skip
    assert 'id="suggestions"' not in page_off.read_text()


def test_an_empty_kb_has_no_suggestions(tmp_path: Path) -> None:
    KnowledgeBase.open(tmp_path / "kb.db").close()
    proc = run_cli(tmp_path, "learn", "suggest", "--kb", str(tmp_path / "kb.db"))
    assert proc.returncode == 0 and "no suggestions yet" in proc.stdout


def test_prevention_advice_names_only_known_error_classes() -> None:
    data = tomllib.loads(PREVENTION.read_text(encoding="utf-8"))
    assert data and set(data) <= set(ERROR_CLASSES)
    assert all(entry["advice"].strip() for entry in data.values())
