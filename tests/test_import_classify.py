"""Records imported without an error class are classified on import (the installed CLI)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from aideploy.knowledge.classes import UNKNOWN
from aideploy.knowledge.exchange import parse_lines
from aideploy.knowledge.exchange.classify import classify_unlabelled
from tests.support.cli import run_cli

LOCK = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process <n> (apt-get)"
DNS = "ssh: Could not resolve hostname <host>: Temporary failure in name resolution"
LABELLED = "E: Unable to locate package nodejs-legacy"


def _attempt(key: str, signature: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "attempt",
        "id": key,
        "signature": signature,
        "strategy": "retry_with_backoff",
        "outcome": "recovered",
        "step": "install",
        "context": {"os": "ubuntu-24.04"},
        **extra,
    }


def _lines(records: list[dict[str, Any]]) -> list[str]:
    header = {"format": "aideploy-kb", "version": 1, "records": len(records)}
    return [json.dumps(r) + "\n" for r in (header, *records)]


RECORDS = [
    {"type": "signature", "signature": DNS, "count": 2},
    {"type": "signature", "signature": LABELLED, "error_class": "apt_lock", "count": 1},
    _attempt("a1", LOCK),
    _attempt("a2", LOCK, error_class=""),
    _attempt("a3", DNS),
    _attempt("a4", LABELLED, error_class="apt_lock"),
]


def test_learn_import_classifies_records_without_a_class(tmp_path: Path) -> None:
    export = tmp_path / "raw.jsonl"
    export.write_text("".join(_lines(RECORDS)), encoding="utf-8")
    kb = tmp_path / "kb.db"
    done = run_cli(tmp_path, "learn", "import", str(export), "--kb", str(kb))
    assert done.returncode == 0, done.stderr
    assert "4 without a class classified" in done.stdout  # 1 signature record + 3 attempts
    with sqlite3.connect(kb) as db:
        classes = dict(db.execute("SELECT text, error_class FROM error_signatures"))
        attempts = {
            key: (cls, json.loads(ctx))
            for key, cls, ctx in db.execute(
                "SELECT a.record_key, s.error_class, a.context FROM recovery_attempts a "
                "JOIN error_signatures s ON s.id = a.signature_id"
            )
        }
    assert classes == {LOCK: "apt_lock", DNS: "dns_failure", LABELLED: "apt_lock"}
    assert attempts["a1"][1] == {"os": "ubuntu-24.04", "class_source": "classified"}
    assert attempts["a3"][1]["class_source"] == "classified"
    assert attempts["a4"][1] == {"os": "ubuntu-24.04"}  # its class came with it


def test_only_unknown_records_are_classified_and_each_text_once() -> None:
    parsed = parse_lines(_lines(RECORDS))
    asked: list[list[str]] = []

    def classify(texts: Any) -> list[str]:
        asked.append(list(texts))
        return ["dns_failure" if "resolve" in t else UNKNOWN for t in texts]

    assert classify_unlabelled(parsed, classify) == 2  # the DNS signature and its attempt
    assert asked == [[DNS, LOCK]]
    assert [a.error_class for a in parsed.attempts] == [UNKNOWN, UNKNOWN, "dns_failure", "apt_lock"]
    assert parsed.attempts[0].context == {"os": "ubuntu-24.04"}  # left unknown, unmarked
