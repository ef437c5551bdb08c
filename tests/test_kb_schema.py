"""The KB schema comes from Alembic only, matches the models, and upgrades keep data."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from aideploy.knowledge.db import (
    at_head,
    current_revision,
    head_revision,
    make_engine,
    resolve_url,
    upgrade,
)
from aideploy.knowledge.models import Base
from aideploy.knowledge.store import KnowledgeBase, normalize_signature, signature_hash


def test_migrated_schema_matches_the_models(kb_url: str) -> None:
    engine = make_engine(resolve_url(kb_url))
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        tables = set(inspect(engine).get_table_names())
        assert {"deployments", "step_runs", "error_signatures", "recovery_attempts"} <= tables
        assert {"strategies", "patterns", "kb_meta", "alembic_version"} <= tables
    finally:
        engine.dispose()


def test_open_creates_and_is_idempotent(kb_url: str) -> None:
    with KnowledgeBase.open(kb_url) as kb:
        first = kb.kb_id()
    with KnowledgeBase.open(kb_url) as kb:
        assert kb.kb_id() == first


def test_revision_1_database_upgrades_with_its_data(kb_url: str) -> None:
    engine = make_engine(resolve_url(kb_url))
    when = datetime(2025, 1, 6, 12, 0, 0)
    try:
        upgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO deployments (id, profile, host, plan, status, started_at) "
                    "VALUES ('d1', 'prod', 'web1', 'default', 'succeeded', :t)"
                ),
                {"t": when},
            )
            conn.execute(
                text(
                    "INSERT INTO error_signatures (text, hash, error_class, first_seen, "
                    "last_seen, count) VALUES ('E: Unable to locate package <pkg>', 'h1', "
                    "'package_not_found', :t, :t, 3)"
                ),
                {"t": when},
            )
            sid = conn.execute(text("SELECT id FROM error_signatures")).scalar_one()
            for i, outcome in enumerate(["failed", "recovered"]):
                conn.execute(
                    text(
                        "INSERT INTO recovery_attempts (signature_id, strategy, step, "
                        "deployment_id, context, outcome, duration, decided_by, at) VALUES "
                        "(:sid, :s, 'install', 'd1', '{\"os\": \"ubuntu\"}', :o, 2.5, 'rule', :t)"
                    ),
                    {"sid": sid, "s": f"strategy{i}", "o": outcome, "t": when},
                )
    finally:
        engine.dispose()

    with KnowledgeBase.open(kb_url) as kb:  # runs revision 2
        outcomes = kb.past_outcomes()
        assert [(o.strategy, o.outcome, o.weight) for o in outcomes] == [
            ("strategy0", "failed", 1.0),
            ("strategy1", "recovered", 1.0),
        ]
        assert outcomes[0].context == {"os": "ubuntu", "step": "install"}
        assert outcomes[0].deployment_id == "d1"
        assert kb.signatures()[0].count == 3
        assert kb.kb_id()
        with kb.reading() as conn:
            keys = conn.execute(text("SELECT record_key, origin FROM recovery_attempts")).all()
        assert len({k for k, _ in keys}) == 2 and all(k for k, _ in keys)
        assert {o for _, o in keys} == {"local"}
        assert current_revision(kb.engine) == head_revision()


def test_head_revision_read_from_the_files_is_alembics() -> None:
    from aideploy.knowledge.db import _alembic_head_revision

    assert head_revision() == _alembic_head_revision() != ""


def test_at_head_only_when_the_stored_revision_is_the_head(kb_url: str) -> None:
    engine = make_engine(resolve_url(kb_url))
    try:
        assert not at_head(engine)  # empty: no alembic_version table
        upgrade(engine, "0002")
        assert not at_head(engine)
        upgrade(engine)
        assert at_head(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_opening_a_kb_at_head_does_not_load_alembic(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    with KnowledgeBase.open(path) as kb:
        kb.start_deployment("d1", "prod", "web1", "default")
    probe = (
        "import sys\n"
        "from aideploy.knowledge.store import KnowledgeBase\n"
        "with KnowledgeBase.open(sys.argv[1]) as kb:\n"
        "    assert kb.counts()['deployments'] == 1\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_revision_3_database_upgrades_with_the_encounters_numbered(kb_url: str) -> None:
    engine = make_engine(resolve_url(kb_url))
    when = datetime(2025, 1, 6, 12, 0, 0)
    # (deployment, signature, outcome) in id order, and the encounter revision 4 must give each
    attempts = [
        ("d1", "A", "skipped", None),  # skipped: not the failure's first attempt
        ("d1", "A", "failed", 1),
        ("d2", "B", "failed", 1),
        ("d2", "A", "recovered", 2),
        ("d1", "A", "recovered", None),  # a second attempt on the same failure
        (None, "A", "failed", None),  # outside any deployment: not a failure
        ("d3", "A", "skipped", None),  # a failure with only skipped attempts has no first one
        ("d3", "B", "failed", 2),
        ("d4", "A", "failed", 3),
    ]
    try:
        upgrade(engine, "0003")
        with engine.begin() as conn:
            for dep in ("d1", "d2", "d3", "d4"):
                conn.execute(
                    text(
                        "INSERT INTO deployments (id, profile, host, plan, status, started_at) "
                        "VALUES (:d, 'prod', 'web1', 'default', 'succeeded', :t)"
                    ),
                    {"d": dep, "t": when},
                )
            for name in ("A", "B", "C"):
                conn.execute(
                    text(
                        "INSERT INTO error_signatures (text, hash, error_class, first_seen, "
                        "last_seen, count) VALUES (:s, :h, 'unknown', :t, :t, 1)"
                    ),
                    {"s": name, "h": signature_hash(normalize_signature(name)), "t": when},
                )
            ids = dict(conn.execute(text("SELECT text, id FROM error_signatures")).all())
            for i, (dep, sig, outcome, _) in enumerate(attempts):
                conn.execute(
                    text(
                        "INSERT INTO recovery_attempts (signature_id, strategy, step, "
                        "deployment_id, context, outcome, duration, decided_by, weight, origin, "
                        "record_key, at) VALUES (:sid, 's', 'install', :d, '{}', :o, 1.0, "
                        "'rule', 1.0, 'local', :k, :t)"
                    ),
                    {"sid": ids[sig], "d": dep, "o": outcome, "k": f"k{i}", "t": when},
                )
    finally:
        engine.dispose()

    with KnowledgeBase.open(kb_url) as kb:  # runs revision 4
        assert current_revision(kb.engine) == head_revision()
        with kb.reading() as conn:
            got = conn.execute(text("SELECT encounter FROM recovery_attempts ORDER BY id")).all()
            highest = dict(
                conn.execute(text("SELECT text, encounters FROM error_signatures")).all()
            )
        assert [n for (n,) in got] == [n for *_, n in attempts]
        assert highest == {"A": 3, "B": 2, "C": 0}
        # and recording goes on from there
        kb.record_attempt("d2", "B", "unknown", "s", "install", "failed", 1.0)  # not a new one
        kb.start_deployment("d5", "prod", "web1", "default")
        kb.record_attempt("d5", "B", "unknown", "s", "install", "failed", 1.0)
        with kb.reading() as conn:
            last = conn.execute(
                text("SELECT encounter FROM recovery_attempts ORDER BY id DESC LIMIT 2")
            ).all()
        assert [n for (n,) in last] == [3, None]


def test_revision_4_downgrades_without_losing_attempts(kb_url: str) -> None:
    from alembic import command

    from aideploy.knowledge.db import _alembic_config

    with KnowledgeBase.open(kb_url) as kb:
        kb.start_deployment("d1", "prod", "web1", "default")
        kb.record_attempt("d1", "E: x", "unknown", "s", "install", "failed", 1.0)
    engine = make_engine(resolve_url(kb_url))
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0003")
        assert current_revision(engine) == "0003"
        columns = {c["name"] for c in inspect(engine).get_columns("recovery_attempts")}
        assert "encounter" not in columns
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM recovery_attempts")).scalar() == 1
    finally:
        engine.dispose()
