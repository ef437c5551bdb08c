"""``learn classify --step`` lists the strategies in the order a deploy of that step tries them."""

from __future__ import annotations

import json
from pathlib import Path

from aideploy.core.result import Result
from aideploy.core.strategies import CATALOGUE
from aideploy.knowledge.signature import signature_of
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services import compose
from tests.support.cli import run_cli

GIT_AUTH = "fatal: Authentication failed for 'https://github.com/acme/shop.git/'"
PORT = (  # names its service (the socket is PostgreSQL's), so service strategies are candidates
    'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" failed: '
    "Connection refused"
)


def _kb(tmp_path: Path) -> Path:
    path = tmp_path / "kb.sqlite"
    kb = KnowledgeBase.open(str(path))
    try:
        for _ in range(3):  # restart_service fixes the refused socket in configure_web only
            kb.record_attempt(
                None,
                PORT,
                "database_connection",
                "restart_service",
                "configure_web",
                "recovered",
                1.0,
            )
    finally:
        kb.close()
    return path


def _classify(tmp_path: Path, kb: Path, *args: str) -> list[dict[str, object]]:
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "".join(
            json.dumps({"id": i, "text": t}) + "\n" for i, t in (("git", GIT_AUTH), ("port", PORT))
        )
    )
    done = run_cli(tmp_path, "learn", "classify", "--input", str(inp), "--kb", str(kb), *args)
    assert done.returncode == 0, done.stderr
    assert not done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _names(row: dict[str, object]) -> list[str]:
    strategies = row["strategies"]
    assert isinstance(strategies, list)
    return [s["name"] for s in strategies]


def test_classify_shows_the_order_a_deploy_of_the_step_would_try(tmp_path: Path) -> None:
    kb = _kb(tmp_path)
    web = {r["id"]: r for r in _classify(tmp_path, kb, "--step", "configure_web")}
    other = {r["id"]: r for r in _classify(tmp_path, kb, "--step", "install_packages")}
    assert web["port"]["step"] == "configure_web"
    # what worked in that step comes first there; in another step the rule's first choice stays
    assert _names(web["port"])[0] == "restart_service"
    assert _names(other["port"])[0] == "start_service"
    # the executor's own path over the same knowledge base gives the same order
    knowledge = KnowledgeBase.open(str(kb))
    try:
        ranker = compose.build_ranker(knowledge, explore=0.0)
        for step, rows in (("configure_web", web), ("install_packages", other)):
            for key, text in (("git", GIT_AUTH), ("port", PORT)):
                result = Result("step", "h", 1, "", text, 0.0)
                failure = ranker.detect(step, result)
                assert failure.signature == signature_of(text)
                # minus what needs a detail the error does not name (no plan: its variables
                # are not checked here)
                want = [
                    c.strategy
                    for c in ranker.candidates(failure)
                    if not [
                        n for n in CATALOGUE[c.strategy].unmet(failure.details, {}) if n.islower()
                    ]
                ]
                assert _names(rows[key]) == want
    finally:
        knowledge.close()


def test_a_manual_step_is_never_first_when_an_automatic_one_is_a_candidate(
    tmp_path: Path,
) -> None:
    kb = _kb(tmp_path)
    for args in ((), ("--step", "deploy_code"), ("--step", "configure_web")):
        for row in _classify(tmp_path, kb, *args):
            names = _names(row)
            assert any(n != "manual_intervention" for n in names)
            assert names[0] != "manual_intervention", (args, row["id"], names)


def test_classify_without_step_reports_an_empty_step(tmp_path: Path) -> None:
    rows = _classify(tmp_path, _kb(tmp_path))
    assert all(r["step"] == "" for r in rows)
