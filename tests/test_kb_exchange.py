"""Export and import: round trip, all-or-nothing, idempotent, safe."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aideploy.core.errors import ImportRejected
from aideploy.knowledge.exchange import export_kb, import_kb
from aideploy.knowledge.report import build_report
from aideploy.knowledge.store import KnowledgeBase

T0 = datetime(2025, 3, 3, 9, 0, 0)
CLASSES = ["apt_lock", "port_in_use", "disk_full", "dns_failure"]
STRATEGIES = ["wait_for_apt_lock", "free_port", "cleanup_disk", "dns_fallback_resolver", "retry"]


def _fill(kb: KnowledgeBase, deployments: int = 30) -> None:
    """A few weeks of deployments with failures and recoveries."""
    for d in range(deployments):
        dep = f"dep-{d:03d}"
        start = T0 + timedelta(days=d)
        kb.start_deployment(
            dep, "prod" if d % 3 else "staging", f"web{d % 2}.corp.example", "default", at=start
        )
        for f in range(d % 4 + 1):
            cls = CLASSES[(d + f) % len(CLASSES)]
            error = f"E: {cls} failure kind {f} on 10.0.{d}.{f}"
            kb.record_error(error, cls, at=start)
            for k in range(2):
                kb.record_attempt(
                    dep,
                    error,
                    cls,
                    STRATEGIES[(d + f + k) % len(STRATEGIES)],
                    "step",
                    "recovered" if (d + f + k) % 3 == 0 or k == 1 else "failed",
                    1.0 + f + k,
                    "ranker",
                    {"os": "ubuntu-24.04", "host": f"web{d % 2}"},
                    at=start + timedelta(minutes=f * 10 + k),
                )
        kb.finish_deployment(dep, "succeeded" if d % 5 else "failed", at=start + timedelta(hours=1))
    kb.add_strategy(
        "restart_gunicorn",
        "restart the app server",
        "medium",
        commands=["systemctl restart gunicorn"],
    )
    kb.add_pattern(
        "lock_held", r"Could not get lock (?P<path>\S+)", "apt_lock", "wait_for_apt_lock"
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_round_trip_gives_the_same_report(kb_url: str, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    export = tmp_path / "kb.jsonl"
    with KnowledgeBase.open(source) as kb:
        _fill(kb)
        expected = build_report(kb).sections
        n = export_kb(kb, export, keep_hosts=True)
    header = json.loads(_lines(export)[0])
    assert header["format"] == "aideploy-kb" and header["version"] == 1
    assert header["records"] == n == len(_lines(export)) - 1
    assert sum('"encounter":' in line for line in _lines(export)) == sum(
        r["failures"] for r in expected["first_try"]
    )
    with KnowledgeBase.open(kb_url) as target:
        summary = import_kb(target, export)
        assert summary.records == n
        assert build_report(target).sections == expected
        assert target.past_outcomes() == []  # inert until its source is trusted
        target.set_trust(summary.source, True)
        outcomes = target.past_outcomes()
        assert {o.weight for o in outcomes} == {0.5}
        with target.reading() as conn:
            from sqlalchemy import text

            decided = {r[0] for r in conn.execute(text("SELECT decided_by FROM recovery_attempts"))}
        assert decided == {"imported"}


def test_export_replaces_private_hosts_unless_kept(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "a.db") as kb:
        _fill(kb, deployments=4)
        export_kb(kb, tmp_path / "plain.jsonl")
        export_kb(kb, tmp_path / "kept.jsonl", keep_hosts=True)
    plain = (tmp_path / "plain.jsonl").read_text()
    assert "corp.example" not in plain and "10.0." not in plain
    assert '"host":"<host>"' in plain
    assert "web0.corp.example" in (tmp_path / "kept.jsonl").read_text()


def test_importing_twice_changes_nothing(kb_url: str, tmp_path: Path) -> None:
    export = tmp_path / "kb.jsonl"
    with KnowledgeBase.open(tmp_path / "source.db") as kb:
        _fill(kb, deployments=8)
        export_kb(kb, export)
    with KnowledgeBase.open(kb_url) as target:
        first = import_kb(target, export)
        counts = target.counts()
        report = build_report(target).sections
        second = import_kb(target, export)
        assert first.total_added > 0 and second.total_added == 0
        assert target.counts() == counts
        assert build_report(target).sections == report


def test_a_bad_line_500_rejects_the_whole_file(kb_url: str, tmp_path: Path) -> None:
    records = [
        {
            "type": "attempt",
            "id": f"rec-{i}",
            "signature": f"E: failure kind {i % 40}",
            "error_class": CLASSES[i % len(CLASSES)],
            "strategy": STRATEGIES[i % len(STRATEGIES)],
            "outcome": "recovered" if i % 2 else "failed",
        }
        for i in range(700)
    ]
    records[498]["outcome"] = "sort of"  # line 500: the header is line 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"format": "aideploy-kb", "version": 1, "records": len(records)})
        + "\n"
        + "\n".join(json.dumps(r) for r in records)
        + "\n"
    )
    with KnowledgeBase.open(kb_url) as target:
        target.start_deployment("mine", "p", "h", "plan")
        target.record_attempt("mine", "E: x", "unknown", "retry", "s", "failed", 1.0)
        before = target.counts()
        with pytest.raises(ImportRejected, match=r"^line 500: attempt: .*outcome") as info:
            import_kb(target, bad)
        assert info.value.exit_code == 2
        assert target.counts() == before


@pytest.mark.parametrize(
    "line",
    [
        "not json at all",
        '["a", "list"]',
        '{"type": "mystery"}',
        '{"type": "attempt", "strategy": "x", "outcome": "recovered"}',
        '{"type": "attempt", "error": "E: x", "strategy": "x", "outcome": "recovered", "weight": 7}',
        '{"type": "strategy", "name": "x", "commands": "rm -rf /"}',
        '{"type": "signature", "signature": "x", "count": -1}',
        '{"type": "attempt", "signature": "", "strategy": "x", "outcome": "failed"}',
        '{"type": "attempt", "signature": 5, "strategy": "x", "outcome": "failed"}',
        '{"type": "attempt", "signature": "s", "strategy": "  ", "outcome": "failed"}',
        '{"type": "attempt", "signature": "s", "strategy": 5, "outcome": "failed"}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "maybe"}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": ["failed"]}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "weight": NaN}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "weight": true}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "duration": -1.5}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "step": ["a"]}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "error_class": 7}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "decided_by": []}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "encounter": 0}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "encounter": true}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "encounter": 2.0}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "encounter": "2"}',
        '{"type": "attempt", "signature": "s", "strategy": "x", "outcome": "failed", "encounter": 2147483648}',
    ],
)
def test_invalid_records_are_named_by_line(tmp_path: Path, line: str) -> None:
    good = '{"type": "attempt", "error": "E: disk full", "strategy": "cleanup_disk", "outcome": "recovered"}'
    path = tmp_path / "f.jsonl"
    path.write_text(
        '{"format": "aideploy-kb", "version": 1, "records": 3}\n' + f"{good}\n{line}\n{good}\n"
    )
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        with pytest.raises(ImportRejected, match=r"^line 3: "):
            import_kb(kb, path)
        assert kb.counts()["attempts"] == 0


def test_header_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        path.write_text('{"format": "aideploy-kb", "version": 2, "records": 0}\n')
        with pytest.raises(ImportRejected, match="version 2 is not supported"):
            import_kb(kb, path)
        path.write_text('{"format": "aideploy-kb", "version": 1, "records": 5}\n')
        with pytest.raises(ImportRejected, match="announces 5 records"):
            import_kb(kb, path)


def test_minimal_foreign_attempts_import(tmp_path: Path) -> None:
    path = tmp_path / "other-tool.jsonl"
    records = [
        {
            "type": "attempt",
            "error": "Error: listen EADDRINUSE: address already in use :::3000",
            "strategy": "free_port",
            "outcome": "recovered",
        },
        {
            "type": "attempt",
            "signature": "E: disk full <path>",
            "strategy": "cleanup_disk",
            "outcome": "failed",
            "error_class": "disk_full",
        },
    ]
    path.write_text(
        json.dumps({"format": "aideploy-kb", "version": 1, "records": 2})
        + "\n"
        + "\n".join(json.dumps(r) for r in records)
        + "\n"
    )
    with KnowledgeBase.open(tmp_path / "kb.db") as kb:
        assert import_kb(kb, path, source_name="friend").added["attempt"] == 2
        assert import_kb(kb, path, source_name="friend").added["attempt"] == 0
        assert kb.past_outcomes() == []  # inert until "friend" is trusted
        kb.set_trust("friend", True)
        outcomes = kb.past_outcomes()
        assert {(o.strategy, o.weight) for o in outcomes} == {
            ("free_port", 0.5),
            ("cleanup_disk", 0.5),
        }
        assert "EADDRINUSE" in outcomes[0].signature


def test_hostile_pattern_is_rejected_quickly(kb_url: str, tmp_path: Path) -> None:
    path = tmp_path / "evil.jsonl"
    evil = {
        "type": "pattern",
        "name": "evil",
        "regex": "(a+)+\\1",  # a backreference: RE2 cannot run it
        "error_class": "unknown",
        "strategy": "retry_with_backoff",
    }
    ok = {
        "type": "pattern",
        "name": "fine",
        "regex": "Could not get lock",
        "error_class": "apt_lock",
        "strategy": "wait_for_apt_lock",
    }
    path.write_text(
        json.dumps({"format": "aideploy-kb", "version": 1, "records": 2})
        + "\n"
        + json.dumps(ok)
        + "\n"
        + json.dumps(evil)
        + "\n"
    )
    with KnowledgeBase.open(kb_url) as kb:
        started = time.monotonic()
        with pytest.raises(ImportRejected, match=r"^line 3: .*evil"):
            import_kb(kb, path)
        assert time.monotonic() - started < 5
        assert kb.patterns(trusted_only=False) == []


def test_imported_strategies_are_untrusted_until_their_source_is(
    kb_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "s.jsonl"
    records = [
        {
            "type": "strategy",
            "name": "nuke_cache",
            "description": "clear it",
            "risk": "high",
            "commands": ["rm -rf /var/cache/app"],
        },
        {"type": "strategy", "name": "just_a_name", "risk": "low"},
    ]
    path.write_text(
        json.dumps({"format": "aideploy-kb", "version": 1, "records": 2})
        + "\n"
        + "\n".join(json.dumps(r) for r in records)
        + "\n"
    )
    with KnowledgeBase.open(kb_url) as kb:
        summary = import_kb(kb, path)
        assert summary.untrusted == ["nuke_cache"]
        trusted = {s.name: s.trusted for s in kb.strategies()}
        assert trusted == {"nuke_cache": False, "just_a_name": False}
        kb.set_trust("s", True)  # the source: the file's name
        assert all(s.trusted for s in kb.strategies())


def _stored_attempts(kb: KnowledgeBase) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with kb.reading() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT record_key, context, at, duration, strategy, outcome, encounter "
                    "FROM recovery_attempts ORDER BY record_key"
                )
            )
        ]


DEPLOYMENT_COLUMNS = "id, profile, host, plan, status, started_at, ended_at FROM deployments"
SIGNATURE_COLUMNS = (
    "text, hash, error_class, count, first_seen, last_seen, encounters FROM error_signatures"
)


def _stored(kb: KnowledgeBase, columns: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with kb.reading() as conn:
        return sorted(tuple(r) for r in conn.execute(text(f"SELECT {columns}")))


def test_bulk_import_rebuilds_the_indexes_and_stores_values_as_the_store_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from aideploy.knowledge.exchange import sql
    from aideploy.knowledge.models import Base

    monkeypatch.setattr(sql, "REBUILD_MIN_ROWS", 1)
    export = tmp_path / "kb.jsonl"
    with KnowledgeBase.open(tmp_path / "source.db") as kb:
        _fill(kb, deployments=6)
        kb.start_deployment("still-running", "prod", "web9", "default", at=T0)  # no ended_at
        export_kb(kb, export, keep_hosts=True)
        expected = _stored_attempts(kb)
        source_deployments = _stored(kb, DEPLOYMENT_COLUMNS)
        source_signatures = _stored(kb, SIGNATURE_COLUMNS)
    with KnowledgeBase.open(tmp_path / "target.db") as target:
        summary = import_kb(target, export)
        assert summary.added["attempt"] == len(expected) > 0
        # JSON text and times byte for byte as record_attempt wrote them
        assert _stored_attempts(target) == expected
        assert _stored(target, DEPLOYMENT_COLUMNS) == source_deployments
        assert _stored(target, SIGNATURE_COLUMNS) == source_signatures
        with target.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert import_kb(target, export).total_added == 0


def test_a_failed_bulk_import_leaves_rows_and_indexes_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import inspect

    from aideploy.knowledge.exchange import sql

    monkeypatch.setattr(sql, "REBUILD_MIN_ROWS", 1)
    export = tmp_path / "kb.jsonl"
    with KnowledgeBase.open(tmp_path / "source.db") as kb:
        _fill(kb, deployments=6)
        export_kb(kb, export)
    real_insert = sql.insert_many

    def insert_then_fail(*args: object, **kwargs: object) -> None:
        real_insert(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sql, "insert_many", insert_then_fail)
    with KnowledgeBase.open(tmp_path / "target.db") as target:
        indexes = {ix["name"] for ix in inspect(target.engine).get_indexes("recovery_attempts")}
        counts = target.counts()
        with pytest.raises(RuntimeError, match="disk on fire"):
            import_kb(target, export)
        assert target.counts() == counts
        after = {ix["name"] for ix in inspect(target.engine).get_indexes("recovery_attempts")}
        assert after == indexes and len(indexes) == 5


def _write_file(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text(
        json.dumps({"format": "aideploy-kb", "version": 1, "records": len(records)})
        + "\n"
        + "".join(json.dumps(r) + "\n" for r in records)
    )
    return path


def _attempt(key: str, dep: str | None, outcome: str, **more: object) -> dict[str, object]:
    record = {"type": "attempt", "id": key, "signature": "E: lock held <path>"}
    record.update(strategy="wait_for_apt_lock", outcome=outcome, deployment=dep, **more)
    return record


def _numbers(kb: KnowledgeBase) -> tuple[dict[str, int | None], int]:
    from sqlalchemy import text

    with kb.reading() as conn:
        keys = dict(conn.execute(text("SELECT record_key, encounter FROM recovery_attempts")).all())
        highest = conn.execute(
            text("SELECT encounters FROM error_signatures WHERE text = 'E: lock held <path>'")
        ).scalar_one()
    return keys, highest


def test_import_keeps_encounters_and_numbers_the_failures_that_have_none(
    kb_url: str, tmp_path: Path
) -> None:
    deployments = [{"type": "deployment", "id": d} for d in ("d1", "d2", "d3", "d4", "d5")]
    path = _write_file(
        tmp_path / "f.jsonl",
        [
            *deployments,
            _attempt("in-1", "d1", "failed", encounter=7),  # kept
            _attempt("in-2", "d1", "recovered"),  # a second attempt on d1's failure
            _attempt("in-3", "d2", "skipped"),  # skipped: not a first attempt
            _attempt("in-4", "d2", "failed"),  # d2's first attempt: after 7 (the file's highest)
            _attempt("in-5", None, "failed", encounter=9),  # no deployment: not kept
            _attempt("in-6", "elsewhere", "failed", encounter=9),  # unknown deployment: not kept
            _attempt("in-7", "d3", "recovered", encounter=4),  # kept, below the highest
            _attempt("in-8", "mine", "failed"),  # the KB has a decided attempt on it already
            _attempt("in-9", "gone", "failed"),  # on a deployment the KB does not have: none
            _attempt("in-10", "d4", "failed"),  # 9
            _attempt("in-11", "d5", "skipped"),  # a failure with only skipped attempts: none
            # a number for a failure the KB counts already (it has a decided attempt on it)
            _attempt("in-12", "mine", "failed", encounter=12),
        ],
    )
    with KnowledgeBase.open(kb_url) as kb:
        kb.start_deployment("mine", "p", "h", "plan")
        kb.record_attempt("mine", "E: lock held <path>", "apt_lock", "retry", "s", "failed", 1.0)
        kb.record_attempt("mine", "E: lock held <path>", "apt_lock", "retry", "s", "failed", 1.0)
        import_kb(kb, path)
        numbers, highest = _numbers(kb)
        imported = {k: v for k, v in numbers.items() if k.startswith("in-")}
        assert imported == {
            "in-1": 7,
            "in-2": None,
            "in-3": None,
            "in-4": 8,
            "in-5": None,
            "in-6": None,
            "in-7": 4,
            "in-8": None,
            "in-9": None,
            "in-10": 9,
            "in-11": None,
            "in-12": None,
        }
        assert highest == 9
        # idempotent: the same file again changes nothing, numbers included
        assert import_kb(kb, path).total_added == 0
        assert _numbers(kb) == (numbers, highest)
        # and the next failure recorded here continues after the imported numbers
        kb.start_deployment("next", "p", "h", "plan")
        kb.record_attempt("next", "E: lock held <path>", "apt_lock", "retry", "s", "failed", 1.0)
        assert _numbers(kb)[1] == 10


def test_a_bad_encounter_rejects_the_file_with_its_line(tmp_path: Path) -> None:
    for value, line in [(0, 3), (True, 3), (1.5, 3), ("1", 3), (-2, 3)]:
        path = _write_file(
            tmp_path / "f.jsonl",
            [
                {"type": "deployment", "id": "d1"},
                _attempt("a1", "d1", "failed", encounter=value),
                _attempt("a2", "d1", "failed", encounter=1),
            ],
        )
        with KnowledgeBase.open(tmp_path / "kb.db") as kb:
            with pytest.raises(
                ImportRejected,
                match=rf'^line {line}: attempt: "encounter" must be an integer between 1 and',
            ):
                import_kb(kb, path)
            assert kb.counts()["attempts"] == 0
