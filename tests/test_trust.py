"""Imported knowledge is inert until its source is trusted, and even trusted it cannot raise a
medium- or high-risk strategy under --auto above what local evidence supports."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from aideploy.core.errors import ImportRejected, KnowledgeBaseError
from aideploy.core.recovery import Candidate, Risk
from aideploy.core.strategies import CATALOGUE
from aideploy.knowledge.auto_cap import AutoCap, cap
from aideploy.knowledge.db import make_engine, resolve_url, upgrade
from aideploy.knowledge.exchange import export_kb, import_kb
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.store import KnowledgeBase, normalize_signature, signature_hash
from aideploy.services import compose, fleet
from tests.support.cli import run_cli

#: a failure that names its service: restart_service (medium) and start_service (low) serve it
ERROR = (
    "Job for gunicorn.service failed because the control process exited with error code.\n"
    'See "systemctl status gunicorn.service" and "journalctl -xeu gunicorn.service" for details.'
)
SOURCE = "platform-team"


def _export(tmp_path: Path, recovered: int = 25) -> Path:
    """An export of another team's KB: a pattern, a command strategy, and many outcomes that
    say restart_service fixes ERROR."""
    with KnowledgeBase.open(tmp_path / "theirs.db") as theirs:
        theirs.add_pattern(
            "gunicorn_down", r"gunicorn\.service failed", "service_failed", "restart_service"
        )
        theirs.add_strategy(
            "kick_gunicorn", "restart it harder", "medium", commands=["systemctl kill gunicorn"]
        )
        for i in range(recovered):
            theirs.start_deployment(f"d{i}", None, "h", "stack")
            theirs.record_attempt(
                f"d{i}", ERROR, "service_failed", "restart_service", "setup_services",
                "recovered", 2.0, "ranker", {"step": "setup_services"},
            )  # fmt: skip
        path = tmp_path / "theirs.jsonl"
        export_kb(theirs, path)
    return path


def _ranking(kb: KnowledgeBase) -> list[tuple[str, float]]:
    ranker = compose.build_ranker(kb, explore=0.0)
    return [(d.strategy, round(d.score, 6)) for d in ranker.rank(ERROR, "setup_services")[1]]


def test_imported_knowledge_is_stored_with_its_source_and_inert_until_trusted(
    kb_url: str, tmp_path: Path
) -> None:
    export = _export(tmp_path)
    with KnowledgeBase.open(kb_url) as kb:
        summary = import_kb(kb, export, source_name=SOURCE)
        assert summary.source == SOURCE and summary.untrusted == ["kick_gunicorn"]
        [info] = kb.sources()
        assert (info.name, info.trusted, info.attempts) == (SOURCE, False, 25)
        assert info.patterns == ("gunicorn_down",)
        assert info.strategies == {"kick_gunicorn": ("systemctl kill gunicorn",)}
        assert [(e.error_class, e.strategy, e.recovered) for e in info.evidence] == [
            ("service_failed", "restart_service", 25)
        ]
        # shown, but not loaded for ranking or running
        assert kb.past_outcomes() == []
        assert kb.patterns() == []
        assert [(s.name, s.trusted) for s in kb.strategies()] == [("kick_gunicorn", False)]
        assert not kb.has_imported_evidence()
        [inert] = kb.inert_evidence(ERROR, "service_failed")
        assert (inert.source, inert.on_signature, inert.on_class) == (SOURCE, 25, 25)

        trusted = kb.set_trust(SOURCE, True)
        assert trusted.trusted and trusted.trusted_at is not None
        assert len(kb.past_outcomes()) == 25 and kb.past_outcomes(local_only=True) == []
        assert [p.name for p in kb.patterns()] == ["gunicorn_down"]
        assert all(s.trusted for s in kb.strategies())
        assert kb.has_imported_evidence() and kb.inert_evidence(ERROR, "service_failed") == []

        kb.set_trust(SOURCE, False)  # revoked: inert again
        assert kb.past_outcomes() == [] and kb.patterns() == []
        assert not any(s.trusted for s in kb.strategies())


def test_a_trusted_source_that_brings_something_new_is_untrusted_again(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        first = _export(tmp_path / "a", recovered=3)
        import_kb(kb, first, source_name=SOURCE)
        kb.set_trust(SOURCE, True)
        again = import_kb(kb, first, source_name=SOURCE)
        assert again.total_added == 0 and not again.was_trusted and again.trusted
        assert kb.sources()[0].trusted  # the same file again changes nothing
        more = import_kb(kb, _export(tmp_path / "b", recovered=4), source_name=SOURCE)
        assert more.total_added and more.was_trusted and not more.trusted
        assert not kb.sources()[0].trusted and kb.past_outcomes() == []


@pytest.mark.parametrize("name", ["local", "custom", "builtin"])
def test_a_source_may_not_take_the_name_of_local_knowledge(tmp_path: Path, name: str) -> None:
    export = _export(tmp_path, recovered=1)
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        with pytest.raises(ImportRejected, match="reserved"):
            import_kb(kb, export, source_name=name)
        assert kb.counts()["attempts"] == 0 and kb.sources() == []


def test_trusting_names_a_source_and_says_where_a_strategy_came_from(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        import_kb(kb, _export(tmp_path, recovered=1), source_name=SOURCE)
        with pytest.raises(KnowledgeBaseError, match=f"came from source '{SOURCE}'"):
            kb.set_trust("kick_gunicorn", True)
        assert not kb.sources()[0].trusted


def test_an_untrusted_import_changes_no_ranking_until_trusted(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        before = _ranking(kb)
        import_kb(kb, _export(tmp_path), source_name=SOURCE)
        assert _ranking(kb) == before
        kb.set_trust(SOURCE, True)
        after = dict(_ranking(kb))
        assert after["restart_service"] > dict(before)["restart_service"]


def test_cap_lowers_medium_and_high_risk_candidates_to_local_support() -> None:
    risk = {"a": Risk.LOW, "b": Risk.MEDIUM, "c": Risk.HIGH, "d": Risk.MEDIUM}.__getitem__
    ranked = [Candidate("b", 0.9, "x"), Candidate("c", 0.8, "x"), Candidate("a", 0.5, "x")]
    ranked.append(Candidate("d", 0.2, "x"))
    out = cap(ranked, {"a": 0.3, "b": 0.4, "d": 0.6}, risk)
    assert [(c.strategy, c.score) for c in out] == [
        ("a", 0.5),  # low risk: untouched
        ("b", 0.4),  # capped at its local score, moved below a
        ("d", 0.2),  # already below its local score: untouched
        ("c", 0.0),  # no local support at all
    ]
    assert "capped" in out[1].why and "capped" not in out[0].why


def test_under_auto_trusted_imported_evidence_cannot_promote_a_medium_risk_strategy(
    tmp_path: Path,
) -> None:
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        import_kb(kb, _export(tmp_path, recovered=40), source_name=SOURCE)
        kb.set_trust(SOURCE, True)
        known = compose.strategies(kb)
        assert CATALOGUE["restart_service"].risk is Risk.MEDIUM
        interactive = compose.build_advisor(kb, None, known, auto=False)
        auto = compose.build_advisor(kb, None, known, auto=True)
        assert isinstance(interactive, Ranker) and isinstance(auto, AutoCap)
        local = Ranker(compose.LocalHistory(kb), auto.full.rules if isinstance(auto.full, Ranker) else None, explore=0.0)  # fmt: skip
        failure = local.failure_of(ERROR, "setup_services")
        assert failure.details.get("service") == "gunicorn"
        on_local = {c.strategy: c.score for c in local.candidates(failure)}
        full = {c.strategy: c.score for c in interactive.candidates(failure)}
        capped = {c.strategy: c.score for c in auto.candidates(failure)}
        # the import did raise it where a person decides ...
        assert full["restart_service"] > on_local.get("restart_service", 0.0)
        # ... but under --auto no medium/high-risk strategy is above its local support
        for name, score in capped.items():
            if known[name].spec.risk is not Risk.LOW:
                assert score <= on_local.get(name, 0.0) + 1e-9, name


def test_without_imported_evidence_auto_uses_the_ranker_alone(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        import_kb(kb, _export(tmp_path, recovered=2), source_name=SOURCE)  # untrusted
        advisor = compose.build_advisor(kb, None, compose.strategies(kb), auto=True)
        assert isinstance(advisor, Ranker)


def test_learn_trust_lists_previews_asks_applies_and_revokes(tmp_path: Path) -> None:
    kb = str(tmp_path / "kb.db")
    export = _export(tmp_path)

    def learn(*args: str) -> tuple[int, str, str]:
        proc = run_cli(tmp_path, "learn", *args, "--kb", kb)
        assert "Traceback" not in proc.stderr
        return proc.returncode, proc.stdout, proc.stderr

    code, out, _ = learn("import", str(export), "--source", SOURCE)
    assert code == 0 and f"source {SOURCE} is UNTRUSTED" in out
    code, out, _ = learn("trust")
    assert code == 0 and SOURCE in out and "NO (inert)" in out

    explain_in = tmp_path / "error.txt"
    explain_in.write_text(ERROR)
    code, out, _ = learn("explain", str(explain_in))
    assert code == 0 and f"from untrusted source {SOURCE}, not used" in out
    assert f"pattern gunicorn_down from untrusted source {SOURCE} matches" in out

    code, out, _ = learn("trust", SOURCE, "--dry-run")
    assert code == 0 and "trusting it makes active" in out and "dry run: nothing changed" in out
    assert "systemctl kill gunicorn" in out and "service_failed: restart_service" in out
    code, out, err = learn("trust", SOURCE)  # no terminal to confirm on
    assert code == 2 and "--yes" in err and len(err.strip().splitlines()) == 1
    assert "NO (inert)" in learn("trust")[1]

    code, out, _ = learn("trust", SOURCE, "--yes")
    assert code == 0 and f"source {SOURCE} is now trusted" in out
    assert "NO (inert)" not in learn("trust")[1]
    assert "untrusted source" not in learn("explain", str(explain_in))[1]

    code, out, _ = learn("trust", SOURCE, "--revoke", "--yes")
    assert code == 0 and f"source {SOURCE} is now untrusted" in out
    code, _, err = learn("trust", "nobody")
    assert code == 1 and "no import source named 'nobody'" in err
    actions = [
        json.loads(line)["action"]
        for line in (tmp_path / "home" / "audit.jsonl").read_text().splitlines()
    ]
    assert actions == ["import", "trust", "untrust"]


def test_a_knowledge_base_upgraded_to_revision_5_holds_its_imported_outcomes_inert(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "old.db")
    engine = make_engine(resolve_url(url))
    when = datetime(2025, 1, 6, 12, 0, 0)
    try:
        upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO error_signatures (text, hash, error_class, first_seen, "
                    "last_seen, count) VALUES (:s, :h, 'service_failed', :t, :t, 1)"
                ),
                {"s": "A", "h": signature_hash(normalize_signature("A")), "t": when},
            )
            for key, origin in (("k1", "local"), ("k2", "team"), ("k3", "team")):
                conn.execute(
                    text(
                        "INSERT INTO recovery_attempts (signature_id, strategy, step, context, "
                        "outcome, duration, decided_by, weight, origin, record_key, at) VALUES "
                        "(1, 'restart_service', 's', '{}', 'recovered', 1.0, 'rule', 1.0, "
                        ":o, :k, :t)"
                    ),
                    {"o": origin, "k": key, "t": when},
                )
    finally:
        engine.dispose()
    with KnowledgeBase.open(url) as kb:  # upgraded to the head on open
        [source] = kb.sources()
        assert (source.name, source.trusted, source.attempts) == ("team", False, 2)
        assert len(kb.past_outcomes()) == 1
        kb.set_trust("team", True)
        assert len(kb.past_outcomes()) == 3


def test_a_fleet_run_under_auto_shares_the_capped_advisor(tmp_path: Path) -> None:
    """The hosts of a fleet run share one advisor: under --auto it is capped like a single
    deployment's, so trusted imported evidence promotes no medium-risk strategy there either."""
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        import_kb(kb, _export(tmp_path, recovered=40), source_name=SOURCE)
        kb.set_trust(SOURCE, True)
        assert isinstance(fleet.run_advisor(kb, None, "auto"), AutoCap)
        assert isinstance(fleet.run_advisor(kb, None, "default"), Ranker)
