"""The importer's fast path for attempt records agrees with the validator on every line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aideploy.core.errors import ImportRejected
from aideploy.knowledge.exchange import import_kb, load, parse_lines, schema, validate
from aideploy.knowledge.store import DECIDERS, OUTCOMES, KnowledgeBase

HEADER = {"format": "aideploy-kb", "version": 1}
GOOD: dict[str, Any] = {
    "type": "attempt",
    "id": "rec-1",
    "signature": "E: disk full <path>",
    "error_class": "disk_full",
    "strategy": "cleanup_disk",
    "outcome": "recovered",
    "step": "install",
    "deployment": "d-1",
    "context": {"os": "ubuntu-24.04"},
    "weight": 1.0,
    "duration": 2.5,
    "decided_by": "ranker",
    "at": "2025-03-03T09:00:00",
    "encounter": 3,
}


def _file(records: list[str]) -> list[str]:
    return [json.dumps({**HEADER, "records": len(records)}) + "\n", *(r + "\n" for r in records)]


def _outcome(lines: list[str]) -> Any:
    try:
        parsed = parse_lines(lines)
    except ImportRejected as exc:
        return ("rejected", str(exc))
    return (parsed.attempts, parsed.records)


def _both_ways(lines: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = _outcome(lines)
    with monkeypatch.context() as m:
        m.setattr(load, "fast_path", lambda *_: lambda _: False)  # all to the validator
        slow = _outcome(lines)
    return fast, slow


def test_the_fast_path_knows_the_outcomes_and_deciders() -> None:
    assert get_args(schema.OutcomeName) == OUTCOMES
    assert get_args(schema.DeciderName) == DECIDERS


ODD_VALUES = [
    None,
    True,
    0,
    1,
    -1,
    2,
    0.5,
    -0.0,
    1e300,
    "",
    " ",
    "x",
    "rec-2",
    "a\n",
    "é",
    "2025-03-03T09:00:00+02:00",
    "2025-03-03 09:00",
    "yesterday",
    "x" * 65,
    "x" * 129,
    [],
    ["failed"],
    {},
    {"k": [1, {"a": None}]},
]


@pytest.mark.parametrize("field", [k for k in GOOD if k != "type"])
def test_odd_values_get_the_same_verdict_on_both_paths(
    field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in [*ODD_VALUES, "recovered", "skipped", "user", "imported", "__missing__"]:
        record = dict(GOOD)
        if value == "__missing__":
            del record[field]
        else:
            record[field] = value
        # twice, so the second line meets the signature the first one made known
        lines = _file([json.dumps(GOOD), json.dumps(record), json.dumps(record)])
        fast, slow = _both_ways(lines, monkeypatch)
        assert fast == slow, (field, value)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.dictionaries(
        st.sampled_from([k for k in GOOD if k != "type"]), JSON_VALUES, max_size=4
    ),
    dropped=st.sets(st.sampled_from([k for k in GOOD if k != "type"]), max_size=3),
)
def test_any_record_gets_the_same_verdict_on_both_paths(
    changes: dict[str, Any], dropped: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = {k: v for k, v in {**GOOD, **changes}.items() if k not in dropped}
    lines = _file([json.dumps(GOOD), json.dumps(record), json.dumps(record)])
    fast, slow = _both_ways(lines, monkeypatch)
    assert fast == slow


def test_unusual_json_is_judged_by_the_json_module(monkeypatch: pytest.MonkeyPatch) -> None:
    good = json.dumps(GOOD)
    for odd in [
        good.replace('"weight": 1.0', '"weight": NaN'),
        good.replace('"d-1"', '"\\ud800"'),
        good.replace('"rec-1"', '"rec-1", "id": "rec-9"'),  # a repeated key: the last one counts
        "  " + good + "  ",
        good + " x",
        good.replace('"install"', '"in\tstall"'),
        good.replace('"ubuntu-24.04"', "1e400"),  # a number msgspec will not read
        good.replace('"ubuntu-24.04"', "123456789012345678901234567890"),
    ]:
        fast, slow = _both_ways(_file([good, odd]), monkeypatch)
        assert fast == slow, odd


def test_the_import_checks_references_itself_and_leaves_foreign_keys_on(tmp_path: Path) -> None:
    known = {**GOOD, "id": "rec-1", "deployment": None}
    unknown = {**GOOD, "id": "rec-2", "deployment": "nowhere"}
    deployment = {"type": "deployment", "id": "d-1", "started_at": "2025-03-03T08:00:00"}
    path = tmp_path / "f.jsonl"
    path.write_text(
        "".join(
            _file(
                [
                    json.dumps(deployment),
                    json.dumps(known),
                    json.dumps(unknown),
                    json.dumps({**GOOD, "id": "rec-3"}),
                ]
            )
        )
    )
    db = tmp_path / "kb.db"
    with KnowledgeBase.open(db) as kb:
        assert import_kb(kb, path).added["attempt"] == 3
        with kb.reading() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        stored = dict(conn.execute("SELECT record_key, deployment_id FROM recovery_attempts"))
    assert stored == {"rec-1": None, "rec-2": None, "rec-3": "d-1"}


def test_a_known_signature_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    check = validate.VALIDATORS["attempt"]

    def counted(rec: dict[str, Any], out: Any, cache: Any) -> None:
        calls.append(rec["id"])
        check(rec, out, cache)

    monkeypatch.setitem(validate.VALIDATORS, "attempt", counted)
    lines = _file([json.dumps({**GOOD, "id": f"rec-{i}"}) for i in range(5)])
    assert len(parse_lines(lines).attempts) == 5
    assert calls == ["rec-0"]  # the first meeting with the signature only
