from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from aideploy.cli import learn_ranker as cli_ranker  # noqa: F401  (attaches the commands)
from aideploy.cli.learn import learn
from aideploy.core.errors import AideployError, UsageError
from aideploy.knowledge.classes import ERROR_CLASSES

HAS_STORE = importlib.util.find_spec("aideploy.knowledge.store") is not None

TEXTS = [
    "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 12 (apt)",
    "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)",
    "bash: gunicorn: command not found",
    "fatal: Authentication failed for 'https://github.com/acme/shop.git/'",
    "Reading package lists...\nsomething quite unexpected happened",
]


def _kb_args(tmp_path: Path) -> list[str]:
    return ["--kb", str(tmp_path / "kb.sqlite")] if HAS_STORE else []


def test_classify_round_trip_on_fresh_kb(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": f"e{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    result = CliRunner().invoke(learn, ["classify", "--input", str(inp), *_kb_args(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["id"] for r in rows] == [f"e{i}" for i in range(len(TEXTS))]
    for row in rows:
        assert set(row) == {
            "id",
            "step",
            "signature",
            "error_class",
            "classes",
            "strategies",
            "not_candidates",
        }
        assert row["error_class"] in ERROR_CLASSES
        assert len(row["classes"]) >= 3
        scores = [c["score"] for c in row["classes"]]
        assert scores == sorted(scores, reverse=True)
        assert row["strategies"] and all(s["why"] for s in row["strategies"])
    assert rows[0]["error_class"] == "apt_lock"
    assert rows[0]["strategies"][0]["name"] == "wait_for_apt_lock"
    assert rows[1]["error_class"] == "port_in_use"
    assert rows[3]["error_class"] == "git_auth"
    assert "acme" not in rows[3]["signature"]


def test_classify_one_text_from_stdin_and_table(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(learn, ["classify", *_kb_args(tmp_path)], input=TEXTS[1])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["id"] == "stdin" and row["error_class"] == "port_in_use"
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "text": TEXTS[0]}) + "\n")
    table = runner.invoke(learn, ["classify", "--input", str(inp), "--format", "table"])
    assert table.exit_code == 0
    assert "apt_lock" in table.output and "wait_for_apt_lock" in table.output


def test_classify_thousand_inputs_quickly(tmp_path: Path) -> None:
    inp = tmp_path / "many.jsonl"
    inp.write_text(
        "".join(
            json.dumps({"id": i, "text": TEXTS[i % len(TEXTS)] + f" #{i}"}) + "\n"
            for i in range(1000)
        )
    )
    start = time.perf_counter()
    result = CliRunner().invoke(learn, ["classify", "--input", str(inp)])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) == 1000
    assert time.perf_counter() - start < 15


def test_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    inp = tmp_path / "bad.jsonl"
    inp.write_text("not json\n")
    result = CliRunner().invoke(learn, ["classify", "--input", str(inp)])
    assert isinstance(result.exception, UsageError)
    assert "bad.jsonl:1" in str(result.exception)


def test_explain_names_rule(tmp_path: Path) -> None:
    src = tmp_path / "err.txt"
    src.write_text(TEXTS[0])
    result = CliRunner().invoke(learn, ["explain", str(src), *_kb_args(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "signature:" in out and "<path>/lock-frontend" in out
    assert "apt_lock -> apt_lock" in out
    assert "neighbours:" in out
    assert "1. wait_for_apt_lock" in out
    # nothing learnt yet about steps: the prior share (2 of 3) of fixes carrying over
    assert "other steps: an outcome there counts 67% of one in this step" in out


def test_patterns_reject_hostile_regex(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        learn,
        [
            "patterns",
            "add",
            "--name",
            "evil",
            "--pattern",
            r"(a+)+\1",
            "--error-class",
            "unknown",
            "--recovery",
            "retry_with_backoff",
            *_kb_args(tmp_path),
        ],
    )
    assert isinstance(result.exception, AideployError)


@pytest.mark.skipif(not HAS_STORE, reason="knowledge base store not available")
def test_patterns_add_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    kb = _kb_args(tmp_path)
    added = runner.invoke(
        learn,
        [
            "patterns",
            "add",
            "--name",
            "cdn",
            "--pattern",
            r"CDN edge \d+ down",
            "--error-class",
            "network_timeout",
            "--recovery",
            "retry_with_backoff",
            *kb,
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(learn, ["patterns", "list", *kb])
    assert listed.exit_code == 0 and "cdn" in listed.output
    row = json.loads(runner.invoke(learn, ["classify", *kb], input="CDN edge 7 down").output)
    assert row["error_class"] == "network_timeout"


def test_explain_from_a_kb_shows_a_fix_that_stopped_working(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    from aideploy.knowledge.signature import signature_of
    from aideploy.knowledge.store import KnowledgeBase

    sig = signature_of(TEXTS[0])
    at = datetime(2026, 1, 1)
    with KnowledgeBase.open(tmp_path / "kb.sqlite") as kb:
        outcomes = ["recovered"] * 6 + ["failed"] * 2
        for i, outcome in enumerate(outcomes):
            kb.start_deployment(f"d{i}", "p", "h", "plan")
            kb.record_attempt(
                f"d{i}", sig, "apt_lock", "wait_for_apt_lock", "install", outcome, 1.0,
                at=at + timedelta(hours=i),
            )  # fmt: skip
    src = tmp_path / "err.txt"
    src.write_text(TEXTS[0])
    args = ["explain", str(src), "--step", "install", "--kb", str(tmp_path / "kb.sqlite")]
    result = CliRunner().invoke(learn, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "1. wait_for_apt_lock" not in out
    assert "failed 2.0 here since it last recovered this error: 74% chance its fix changed" in out
