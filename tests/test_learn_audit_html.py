"""`learn report --html`, and the audit entries that import and trust leave."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_cli


def test_report_html_option_writes_a_page_with_plots(tmp_path: Path) -> None:
    kb = tmp_path / "kb.sqlite"
    assert run_cli(tmp_path, "deploy", "--local", "--kb", str(kb)).returncode == 0
    page = tmp_path / "report.html"
    proc = run_cli(tmp_path, "learn", "report", "--kb", str(kb), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') >= 4


def test_import_and_trust_are_audited(tmp_path: Path) -> None:
    source, target = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    added = run_cli(
        tmp_path,
        "learn",
        "patterns",
        "add",
        "--kb",
        str(source),
        "--name",
        "legacy_oom",
        "--pattern",
        "LegacyWorker ran out of memory",
        "--error-class",
        "out_of_memory",
        "--recovery",
        "limit_build_memory",
    )
    assert added.returncode == 0, added.stderr
    export = tmp_path / "kb.jsonl"
    assert run_cli(tmp_path, "learn", "export", "--kb", str(source), str(export)).returncode == 0
    imported = run_cli(tmp_path, "learn", "import", "--kb", str(target), str(export))
    assert imported.returncode == 0, imported.stderr
    trusted = run_cli(tmp_path, "learn", "trust", "--kb", str(target), "kb", "--yes")
    assert trusted.returncode == 0, trusted.stderr
    entries = [
        json.loads(line) for line in (tmp_path / "home" / "audit.jsonl").read_text().splitlines()
    ]
    assert [e["action"] for e in entries] == ["import", "trust"]
    assert entries[1]["details"]["source"] == "kb"
    assert run_cli(tmp_path, "audit", "verify").returncode == 0
