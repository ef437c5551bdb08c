"""Hostile input through the installed CLI: one line on stderr, exit code 2, no traceback, no
hang, nothing written (deep nesting, FIFOs and directories as files, unsafe names in an import,
--plan module:attr naming something that is not a plan)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aideploy.knowledge.store import KnowledgeBase
from tests.support.cli import run_cli

HEADER = {"format": "aideploy-kb", "version": 1}
# a run that is refused must end at once; this bounds a hang, it is no measure of speed
NO_HANG = 60.0


def _refused(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit code 2, one line on stderr naming each of ``expected``, no traceback."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for part in expected:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def _jsonl(path: Path, *records: dict[str, Any], extra: str | None = None) -> Path:
    count = len(records) + (extra is not None)
    lines = [json.dumps({**HEADER, "records": count}), *(json.dumps(r) for r in records)]
    if extra is not None:
        lines.append(extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _imported(kb: Path) -> dict[str, int]:
    """How many rows an import could have added (none when the KB was never created)."""
    if not kb.exists():
        return {}
    with sqlite3.connect(kb) as db:
        counts = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("deployments", "error_signatures", "recovery_attempts", "patterns")
        }
        counts["imported strategies"] = db.execute(
            "SELECT count(*) FROM strategies WHERE name = 'good_one'"
        ).fetchone()[0]
    return {k: v for k, v in counts.items() if v}


GOOD = (
    {"type": "strategy", "name": "good_one", "risk": "low"},
    {
        "type": "deployment",
        "id": "20250101-000000-abcdef",
        "profile": "prod",
        "host": "web1",
        "plan": "stack",
        "status": "succeeded",
        "started_at": "2025-01-01T00:00:00",
    },
    {"type": "signature", "signature": "E: disk full", "error_class": "disk_full"},
)


def _attempt(**fields: Any) -> dict[str, Any]:
    record = {
        "type": "attempt",
        "id": "a1",
        "signature": "E: disk full",
        "error_class": "disk_full",
        "strategy": "cleanup_disk",
        "outcome": "recovered",
        "deployment": "20250101-000000-abcdef",
    }
    record.update(fields)
    return record


def test_a_valid_file_like_the_bad_ones_is_imported(tmp_path: Path) -> None:
    """The files below differ from this one in one value: this one must go in (so each
    refusal is of that value, not of the rest)."""
    kb = tmp_path / "kb.db"
    path = _jsonl(tmp_path / "good.jsonl", *GOOD, _attempt(), _attempt(id="a2", deployment="d-1"))
    proc = run_cli(tmp_path, "learn", "import", "--kb", str(kb), str(path))
    assert proc.returncode == 0, proc.stderr
    assert _imported(kb) == {
        "deployments": 1,
        "error_signatures": 1,
        "recovery_attempts": 2,
        "imported strategies": 1,
    }


# -- deep nesting ------------------------------------------------------------------------------

DEEP = "[" * 100_000


@pytest.mark.parametrize(
    ("name", "body", "line"),
    [
        ("header", DEEP + "\n", "line 1"),
        ("record", json.dumps({**HEADER, "records": 1}) + "\n" + DEEP + "\n", "line 2"),
        (
            "context",
            json.dumps({**HEADER, "records": 1})
            + "\n"
            + json.dumps(_attempt())[:-1]
            + ', "context": {"a": '
            + "[" * 40
            + "]" * 40
            + "}}\n",
            "line 2",
        ),
    ],
)
def test_deep_nesting_in_an_import_is_refused(
    tmp_path: Path, name: str, body: str, line: str
) -> None:
    kb = tmp_path / "kb.db"
    path = tmp_path / f"{name}.jsonl"
    path.write_text(body, encoding="utf-8")
    proc = run_cli(tmp_path, "learn", "import", "--kb", str(kb), str(path), timeout=NO_HANG)
    _refused(proc, line, "nested more than 32 levels")
    assert _imported(kb) == {}


def test_deep_nesting_in_a_plan_file_and_a_classify_input_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "deep.toml"
    plan.write_text("a = " + DEEP + "\n", encoding="utf-8")
    proc = run_cli(tmp_path, "deploy", "--local", "--dry-run", "--plan", str(plan))
    _refused(proc, "deep.toml", "nested more than 32 levels")
    inputs = tmp_path / "deep.jsonl"
    inputs.write_text(DEEP + "\n", encoding="utf-8")
    proc = run_cli(tmp_path, "learn", "classify", "--input", str(inputs), "--kb", "kb.db")
    _refused(proc, "deep.jsonl:1", "nested too deeply")


# -- files that are no regular files -------------------------------------------------------------


def _readers(path: str) -> list[list[str]]:
    """Every command that reads a file a user names, reading ``path``."""
    return [
        ["learn", "import", "--kb", "kb.db", path],
        ["config", "validate", path],
        ["--config", path, "deploy", "--local", "--dry-run"],
        ["deploy", "--local", "--dry-run", "--plan", path],
        ["learn", "classify", "--input", path, "--kb", "kb.db"],
        ["learn", "explain", path, "--kb", "kb.db"],
        ["audit", "verify", "--file", path],
        ["audit", "show", "--file", path],
        # refused before any connection: port 1 is never reached
        ["test-connection", "--server", "127.0.0.1", "--port", "1", "--key-file", path],
    ]


@pytest.mark.parametrize("kind", ["a FIFO", "a directory"])
def test_a_fifo_or_directory_given_as_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    # a .toml name, so that --plan takes it for a plan file
    path = tmp_path / "input.toml"
    if kind == "a FIFO":
        os.mkfifo(path)
    else:
        path.mkdir()
    for args in _readers(str(path)):
        proc = run_cli(tmp_path, *args, timeout=NO_HANG)
        _refused(proc, f"{path}: not a regular file ({kind})")
    assert not (tmp_path / "kb.db").exists()  # refused before the knowledge base is opened


def test_stdin_stays_allowed(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "good.jsonl", *GOOD)
    env = {**os.environ, "AIDEPLOY_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "aideploy", "learn", "import", "--kb", "kb.db", "-"],
        input=path.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=NO_HANG,
    )
    assert proc.returncode == 0, proc.stderr
    assert _imported(tmp_path / "kb.db")["deployments"] == 1


# -- names and classes in an import -----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"type": "deployment", "id": "../../../tmp/x"}, '"id" must be'),
        ({"type": "deployment", "id": "-rf"}, '"id" must be'),
        ({"type": "deployment", "id": "/etc/passwd"}, '"id" must be'),
        (_attempt(deployment="../../../tmp/x"), '"deployment" must be'),
        ({"type": "strategy", "name": "x;rm -rf /"}, '"name" must be'),
        (_attempt(strategy="x;rm -rf /"), '"strategy" must be'),
        (_attempt(strategy="$(reboot)"), '"strategy" must be'),
        (
            {
                "type": "pattern",
                "name": "p",
                "regex": "disk",
                "error_class": "disk_full",
                "strategy": "a`b`",
            },
            '"strategy" must be',
        ),
        (_attempt(error_class="made_up"), "'made_up' is not an error class"),
        (
            {"type": "signature", "signature": "E: x", "error_class": "made_up"},
            "'made_up' is not an error class",
        ),
        (
            {"type": "pattern", "name": "p", "regex": "disk", "error_class": "made_up"},
            "'made_up' is not an error class",
        ),
    ],
)
def test_unsafe_names_and_unknown_classes_reject_the_whole_import(
    tmp_path: Path, bad: dict[str, Any], expected: str
) -> None:
    kb = tmp_path / "kb.db"
    path = _jsonl(tmp_path / "bad.jsonl", *GOOD, bad)
    proc = run_cli(tmp_path, "learn", "import", "--kb", str(kb), str(path))
    line = _refused(proc, f"line {len(GOOD) + 2}: {bad['type']}: ", expected)
    assert line.startswith("error: line ")
    assert _imported(kb) == {}


# -- --plan module:attr --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("os:system", "a built-in function"),
        ("os:path", "a module"),
        ("os:sep", "a str"),
        ("shutil:rmtree", "a function that needs arguments"),
        ("collections:OrderedDict", "a class"),
    ],
)
def test_plan_that_is_not_a_plan_is_refused_without_being_called(
    tmp_path: Path, spec: str, kind: str
) -> None:
    proc = run_cli(tmp_path, "deploy", "--local", "--dry-run", "--plan", spec)
    _refused(proc, f"--plan {spec}: not a plan ({kind})")


def test_plan_function_must_return_a_plan(tmp_path: Path) -> None:
    (tmp_path / "myplans.py").write_text(
        "from aideploy.steps.example import plan as example\n"
        "def nothing():\n    return 42\n"
        "def good():\n    return example()\n",
        encoding="utf-8",
    )
    env = {"PYTHONPATH": str(tmp_path)}
    proc = run_cli(tmp_path, "deploy", "--local", "--dry-run", "--plan", "myplans:nothing", env=env)
    _refused(proc, "--plan myplans:nothing: not a plan (nothing() returned an int)")
    proc = run_cli(
        tmp_path, "deploy", "--local", "--dry-run", "--offline", "--plan", "myplans:good", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "Dry run: plan example" in proc.stdout


def test_export_never_replaces_a_file_that_is_not_an_export(tmp_path: Path) -> None:
    kb = str(tmp_path / "kb.sqlite")
    with KnowledgeBase.open(kb):  # an empty knowledge base
        pass
    precious = tmp_path / "passwd"
    precious.write_text("root:x:0:0:root:/root:/bin/bash\n")
    precious.chmod(0o644)
    refused = run_cli(tmp_path, "learn", "export", "--kb", kb, str(precious))
    assert refused.returncode == 2, refused.stderr
    assert "not an aideploy export" in refused.stderr and "Traceback" not in refused.stderr
    assert precious.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert precious.stat().st_mode & 0o777 == 0o644

    export = tmp_path / "team.jsonl"
    for _ in range(2):  # an earlier export is replaced without --force
        done = run_cli(tmp_path, "learn", "export", "--kb", kb, str(export))
        assert done.returncode == 0, done.stderr
    forced = run_cli(tmp_path, "learn", "export", "--kb", kb, "--force", str(precious))
    assert forced.returncode == 0, forced.stderr
    assert json.loads(precious.read_text().splitlines()[0])["format"] == "aideploy-kb"
