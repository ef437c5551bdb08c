"""Audit log: the hash chain detects edits, deletions and reordering; appends are safe across
processes; the CLI verifies and shows it."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from aideploy.cli.ops import audit_group
from aideploy.engine import audit
from tests.support.cli import run_cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path))
    return tmp_path


def _fill(n: int = 4) -> Path:
    for i in range(n):
        audit.record(
            "deploy",
            result="completed" if i % 2 else "failed",
            target=f"root@host{i}:22",
            deployment_id=f"20250101-00000{i}-abcdef",
            details={"plan": "example"},
        )
    return audit.audit_path()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_entries_are_chained_and_private(home: Path) -> None:
    path = _fill(3)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [json.loads(line) for line in _lines(path)]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["prev"] == audit.GENESIS
    assert rows[1]["prev"] == rows[0]["hash"]
    assert rows[0]["user"] and rows[0]["action"] == "deploy"
    result = audit.verify()
    assert result.ok and result.count == 3 and result.head == rows[2]["hash"]


def test_secrets_are_redacted_before_hashing(home: Path) -> None:
    audit.record("import", result="ok", details={"source": "https://bob:hunter22@kb.example.com/x"})
    text = audit.audit_path().read_text()
    assert "hunter22" not in text
    assert audit.verify().ok


def test_edited_field_is_detected(home: Path) -> None:
    path = _fill()
    lines = _lines(path)
    lines[1] = lines[1].replace('"result": "completed"', '"result": "failed"')
    path.write_text("".join(lines))
    result = audit.verify()
    assert not result.ok and result.broken_line == 2 and "hash" in (result.problem or "")


def test_edited_line_with_recomputed_hash_breaks_the_next_link(home: Path) -> None:
    path = _fill()
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["result"] = "completed-ok"
    entry["hash"] = audit.entry_hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True) + "\n"
    path.write_text("".join(lines))
    result = audit.verify()
    assert result.broken_line == 3 and "previous" in (result.problem or "")


def test_deleted_line_is_detected(home: Path) -> None:
    path = _fill()
    lines = _lines(path)
    del lines[1]
    path.write_text("".join(lines))
    assert audit.verify().broken_line == 2


def test_swapped_lines_are_detected(home: Path) -> None:
    path = _fill()
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    assert audit.verify().broken_line == 2


def test_truncation_is_detected_with_a_known_head(home: Path) -> None:
    path = _fill()
    head = audit.verify().head
    lines = _lines(path)
    path.write_text("".join(lines[:-1]))
    assert audit.verify().ok  # the chain alone cannot see a cut tail
    result = audit.verify(head=head)
    assert not result.ok and "head" in (result.problem or "")
    audit.record("deploy", result="completed")
    path.write_text("".join(lines))
    assert audit.verify(head=head).ok


def test_garbage_line_is_reported(home: Path) -> None:
    path = _fill(2)
    with path.open("a") as handle:
        handle.write("not json\n")
    result = audit.verify()
    assert result.broken_line == 3
    with pytest.raises(audit.AuditError):
        audit.record("deploy", result="x")


def _append_many(home: str, worker: int, count: int) -> None:
    os.environ["AIDEPLOY_HOME"] = home
    for i in range(count):
        audit.record("deploy", result="completed", details={"worker": worker, "i": i})


def test_concurrent_appends_keep_the_chain(home: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(home), w, 25)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    result = audit.verify()
    assert result.ok, result
    assert result.count == 100


def test_cli_verify_and_show(home: Path) -> None:
    path = _fill(3)
    runner = CliRunner()
    ok = runner.invoke(audit_group, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "3 entries, chain intact" in ok.output
    shown = runner.invoke(audit_group, ["show", "-n", "2"])
    assert shown.exit_code == 0
    assert "host2" in shown.output and "host0" not in shown.output
    as_json = runner.invoke(audit_group, ["show", "--json"])
    assert [json.loads(x)["seq"] for x in as_json.output.splitlines()] == [1, 2, 3]
    lines = _lines(path)
    path.write_text(lines[0] + lines[2])
    broken = runner.invoke(audit_group, ["verify"])
    assert broken.exit_code == 1
    assert "line 2" in broken.output


def test_cli_verify_empty_log(home: Path) -> None:
    result = CliRunner().invoke(audit_group, ["verify"])
    assert result.exit_code == 0
    assert "0 entries" in result.output


@pytest.mark.parametrize("tamper", ["edited", "deleted", "reordered", "truncated"])
def test_installed_cli_verify_exits_non_zero_on_every_tamper(home: Path, tamper: str) -> None:
    """Through the real entry point (subprocess), where a lost exit code would show."""
    path = _fill(4)
    lines = _lines(path)
    if tamper == "edited":
        lines[1] = lines[1].replace("host1", "host9")
    elif tamper == "deleted":
        del lines[2]
    elif tamper == "reordered":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
    path.write_text("".join(lines))
    proc = run_cli(home, "audit", "verify", env={"AIDEPLOY_HOME": str(home)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "audit log broken at line" in proc.stderr
    assert "Traceback" not in proc.stderr
