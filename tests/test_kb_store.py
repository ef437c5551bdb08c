"""Recording into the KB and reading it back, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from aideploy.core.errors import KnowledgeBaseError
from aideploy.knowledge.exchange import export_kb
from aideploy.knowledge.history import History
from aideploy.knowledge.store import KnowledgeBase

PASSWORD = "Tr0ub4dor-and-3"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def test_recording_round_trip(kb_url: str) -> None:
    with KnowledgeBase.open(kb_url) as kb:
        kb.start_deployment("d1", "prod", "web1", "default")
        kb.record_step_run(
            "d1", "install_node", 1, 100, 4.2, "E: Unable to locate package x", False
        )
        sig = kb.record_error("E: Unable to locate package nodejs", "package_not_found")
        assert sig == kb.record_error("E: Unable to locate package npm", "package_not_found")
        kb.record_attempt(
            "d1",
            sig,
            "package_not_found",
            "retry_with_backoff",
            "install_node",
            "failed",
            1.0,
            "rule",
            {"os": "ubuntu-24.04"},
        )
        kb.record_attempt(
            "d1",
            "E: Unable to locate package nodejs",
            "package_not_found",
            "apt_update",
            "install_node",
            "recovered",
            3.0,
            "ranker",
        )
        kb.finish_deployment("d1", "succeeded")

        history: History = kb
        outcomes = list(history.past_outcomes())
        assert [(o.signature, o.strategy, o.outcome) for o in outcomes] == [
            (sig, "retry_with_backoff", "failed"),
            (sig, "apt_update", "recovered"),
        ]
        # the step (a column of its own) reaches the ranker with the recorded context
        assert outcomes[0].context == {"os": "ubuntu-24.04", "step": "install_node"}
        assert outcomes[1].context == {"step": "install_node"}
        assert all(o.weight == 1.0 and o.deployment_id == "d1" for o in outcomes)

        [info] = kb.signatures()
        assert info.text == sig and info.error_class == "package_not_found"
        assert info.count == 3  # two record_error calls + one failure in d1
        stats = {s.strategy: s for s in kb.strategy_stats()}
        assert stats["apt_update"].success_rate == 1.0
        assert stats["apt_update"].mean_time_to_recovery == 3.0
        assert stats["retry_with_backoff"].success_rate == 0.0
        assert kb.counts()["step_runs"] == 1

        with pytest.raises(KnowledgeBaseError):
            kb.record_attempt("d1", sig, "x", "s", "step", "maybe", 1.0, "rule")
        with pytest.raises(KnowledgeBaseError):
            kb.finish_deployment("nope", "failed")


def test_strategies_patterns_and_trust(kb_url: str) -> None:
    with KnowledgeBase.open(kb_url) as kb:
        kb.add_strategy(
            "flush_cache", "drop the cache", "low", commands=["rm -rf /tmp/c"], trusted=False
        )
        assert [s.trusted for s in kb.strategies()] == [False]
        kb.add_pattern(
            "no_pkg",
            r"Unable to locate package (?P<pkg>\S+)",
            "package_not_found",
            "apt_update",
            trusted=False,
        )
        assert kb.patterns() == []
        [p] = kb.patterns(trusted_only=False)
        assert (p.name, p.pattern, p.recovery) == ("no_pkg", p.regex, "apt_update")
        with pytest.raises(KnowledgeBaseError, match="backreference"):
            kb.add_pattern("evil", r"(a+)\1", "unknown", "x")
        with pytest.raises(KnowledgeBaseError, match="no import source"):
            kb.set_trust("nothing-by-that-name", True)


def test_planted_secrets_are_stored_nowhere(kb_url: str, tmp_path: Path) -> None:
    script = (
        f"echo 'connecting with PGPASSWORD={PASSWORD}'; "
        f"echo 'fatal: https://{TOKEN}@github.com/acme/app.git: Authentication failed'; "
        f"echo 'token {TOKEN} rejected' >&2; exit 128"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert PASSWORD in output and TOKEN in output

    with KnowledgeBase.open(kb_url) as kb:
        kb.start_deployment("d1", "prod", "web1", "default")
        kb.record_step_run("d1", "clone", 1, proc.returncode, 0.1, output, False)
        kb.record_error(output, "git_auth")
        kb.record_attempt(
            "d1",
            output,
            "git_auth",
            "manual_intervention",
            "clone",
            "failed",
            0.5,
            "rule",
            {"env": f"PGPASSWORD={PASSWORD}", "token": TOKEN},
        )
        kb.add_strategy("s", f"uses {TOKEN}", "low", commands=[f"export PGPASSWORD={PASSWORD}"])

        dump: list[str] = []
        with kb.reading() as conn:
            for table in (
                "deployments",
                "step_runs",
                "error_signatures",
                "recovery_attempts",
                "strategies",
            ):
                dump.extend(str(row) for row in conn.execute(text(f"SELECT * FROM {table}")))
        everything = "\n".join(dump)
        assert "***" in everything
        assert PASSWORD not in everything and TOKEN not in everything

        export = tmp_path / "kb.jsonl"
        export_kb(kb, export)
        exported = export.read_text()
        assert PASSWORD not in exported and TOKEN not in exported

    if "://" not in kb_url:
        for f in Path(kb_url).parent.glob(Path(kb_url).name + "*"):
            raw = f.read_bytes()
            assert PASSWORD.encode() not in raw and TOKEN.encode() not in raw, f


def test_bad_url_error_hides_the_password() -> None:
    with pytest.raises(KnowledgeBaseError) as info:
        KnowledgeBase.open("postgresql+psycopg://app:hunter2-secret@127.0.0.1:9/kb")
    assert "hunter2-secret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_env_var_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aideploy.knowledge import db

    monkeypatch.setenv("AIDEPLOY_KB", str(tmp_path / "env.db"))
    assert db.resolve_url(None).database == str(tmp_path / "env.db")
    assert db.resolve_url("other.db").database.endswith("other.db")  # type: ignore[union-attr]
    monkeypatch.delenv("AIDEPLOY_KB")
    assert db.resolve_url(None).database == str(db.default_path())


# --- several processes writing one SQLite file ------------------------------------------------

WRITERS = 4
PER_WRITER = 1000


def _writer(path: str, n: int, worker: int) -> None:
    kb = KnowledgeBase.open(path)
    for i in range(n):
        kb.record_attempt(
            f"w{worker}",
            f"E: failure number {i % 50}",
            "unknown",
            f"strategy{i % 7}",
            "step",
            "recovered" if i % 3 else "failed",
            0.01,
            "rule",
        )
    kb.close()


def _run_writers(target: Callable[[str, int, int], None], url: str, n: int) -> None:
    """WRITERS processes run ``target(url, n, worker)`` at the same time; all must succeed."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(url, n, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * WRITERS


def test_concurrent_writers_lose_nothing(kb_url: str) -> None:
    with KnowledgeBase.open(kb_url) as kb:
        for w in range(WRITERS):
            kb.start_deployment(f"w{w}", "p", "h", "plan")
    _run_writers(_writer, kb_url, PER_WRITER)
    with KnowledgeBase.open(kb_url) as kb:
        assert kb.counts()["attempts"] == WRITERS * PER_WRITER
        assert sum(s.attempts for s in kb.strategy_stats()) == WRITERS * PER_WRITER
        with kb.reading() as conn:
            numbers = conn.execute(
                text(
                    "SELECT s.text, a.encounter, s.encounters FROM recovery_attempts a "
                    "JOIN error_signatures s ON s.id = a.signature_id "
                    "WHERE a.encounter IS NOT NULL ORDER BY s.text, a.encounter"
                )
            ).all()
    per_signature: dict[str, list[int]] = {}
    for signature, n, highest in numbers:
        per_signature.setdefault(signature, []).append(n)
        assert highest == WRITERS
    # one signature (the number is masked), met once in each writer's deployment
    assert list(per_signature.values()) == [list(range(1, WRITERS + 1))]


def _deployer(url: str, deployments: int, worker: int) -> None:
    with KnowledgeBase.open(url) as kb:
        for d in range(deployments):
            dep = f"w{worker}-d{d}"
            kb.start_deployment(dep, "p", "h", "plan")
            for outcome in ("failed", "recovered"):
                kb.record_attempt(dep, "E: the same error", "unknown", "s", "step", outcome, 0.1)


def test_concurrent_deployments_meeting_one_signature_get_numbers_1_to_n(kb_url: str) -> None:
    deployments = 25
    KnowledgeBase.open(kb_url).close()
    _run_writers(_deployer, kb_url, deployments)
    with KnowledgeBase.open(kb_url) as kb, kb.reading() as conn:
        numbers = conn.execute(
            text("SELECT deployment_id, encounter FROM recovery_attempts ORDER BY id")
        ).all()
        highest = conn.execute(text("SELECT encounters FROM error_signatures")).scalar_one()
    firsts = [n for _, n in numbers if n is not None]
    assert sorted(firsts) == list(range(1, WRITERS * deployments + 1))
    assert highest == WRITERS * deployments
    # in the order they were recorded, and only on each deployment's first attempt
    assert firsts == sorted(firsts)
    assert len({d for d, n in numbers if n is not None}) == WRITERS * deployments


def _encounters(kb: KnowledgeBase) -> list[tuple[str | None, str, int | None]]:
    with kb.reading() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT deployment_id, outcome, encounter FROM recovery_attempts ORDER BY id")
            )
        ]


def test_a_failures_first_attempt_gets_the_signatures_next_encounter(kb_url: str) -> None:
    error = "E: Could not get lock /var/lib/dpkg/lock"
    with KnowledgeBase.open(kb_url) as kb:
        for dep in ("d1", "d2", "d3"):
            kb.start_deployment(dep, "p", "h", "plan")

        def attempt(dep: str | None, outcome: str) -> None:
            kb.record_attempt(dep, error, "apt_lock", "wait_for_apt_lock", "install", outcome, 1.0)

        attempt("d1", "failed")  # the first deployment that meets it: 1
        attempt("d1", "recovered")  # a second attempt in the same deployment: none
        attempt("d2", "skipped")  # skipped: not the failure's first attempt
        attempt("d2", "failed")  # the failure's first attempt: 2
        attempt(None, "failed")  # outside any deployment: not a failure
        attempt("d3", "recovered")  # 3
        assert _encounters(kb) == [
            ("d1", "failed", 1),
            ("d1", "recovered", None),
            ("d2", "skipped", None),
            ("d2", "failed", 2),
            (None, "failed", None),
            ("d3", "recovered", 3),
        ]
        (info,) = kb.signatures()
        # occurrences as before: the first attempt in each deployment, and each one outside any
        assert info.count == 4
        with kb.reading() as conn:
            assert conn.execute(text("SELECT encounters FROM error_signatures")).scalar_one() == 3
