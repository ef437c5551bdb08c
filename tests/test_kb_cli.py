"""`aideploy learn` store commands through click's CliRunner, and through main() for exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aideploy.cli.main import cli, main
from aideploy.core.errors import ImportRejected
from aideploy.knowledge.store import KnowledgeBase


@pytest.fixture
def filled(tmp_path: Path) -> str:
    path = str(tmp_path / "kb.db")
    with KnowledgeBase.open(path) as kb:
        kb.start_deployment("d1", "prod", "web1", "default")
        kb.record_attempt(
            "d1",
            "E: Could not get lock /var/lib/dpkg/lock-frontend",
            "apt_lock",
            "wait_for_apt_lock",
            "install",
            "recovered",
            12.0,
            "rule",
        )
        kb.finish_deployment("d1", "succeeded")
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["learn", *args], catch_exceptions=True)
    if isinstance(result.exception, ImportRejected):
        return result.exception.exit_code, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_every_command_has_help() -> None:
    for command in ("report", "signatures", "strategies", "export", "import", "trust"):
        code, out = _run(command, "--help")
        assert code == 0 and "--kb" in out, command


def test_report_formats(filled: str) -> None:
    code, out = _run("report", "--kb", filled)
    assert code == 0
    assert "Best strategy per error class" in out and "wait_for_apt_lock" in out
    code, out = _run("report", "--kb", filled, "--format", "json", "--profile", "prod")
    data = json.loads(out)
    assert data["strategies"][0]["strategy"] == "wait_for_apt_lock"
    assert data["first_try"][0]["first_try_rate"] == 1.0
    code, out = _run("report", "--kb", filled, "--format", "csv", "--since", "2000-01-01")
    assert code == 0 and "# strategies" in out
    code, out = _run("report", "--kb", filled, "--format", "json", "--host", "elsewhere")
    assert json.loads(out)["strategies"] == []


def test_signatures_and_strategies(filled: str) -> None:
    code, out = _run("signatures", "--kb", filled)
    assert code == 0 and "Could not get lock" in out
    code, out = _run("strategies", "--kb", filled, "--format", "json")
    assert json.loads(out)[0]["strategy"] == "wait_for_apt_lock"


def test_export_import_trust(filled: str, tmp_path: Path) -> None:
    export = tmp_path / "out.jsonl"
    code, _ = _run("export", "--kb", filled, str(export))
    assert code == 0 and export.exists()
    lines = export.read_text().splitlines()
    lines[-1:-1] = [json.dumps({"type": "strategy", "name": "zap", "commands": ["true"]})]
    header = json.loads(lines[0])
    header["records"] += 1
    lines[0] = json.dumps(header)
    export.write_text("\n".join(lines) + "\n")

    other = str(tmp_path / "other.db")
    code, out = _run("import", "--kb", other, str(export), "--source", "team")
    assert code == 0 and "imported" in out and "source team is UNTRUSTED" in out
    code, out = _run("import", "--kb", other, str(export), "--source", "team")
    assert code == 0 and "nothing new" in out
    code, out = _run("strategies", "--kb", other)
    assert "NO (learn trust)" in out
    code, out = _run("trust", "--kb", other, "team", "--yes")
    assert code == 0 and "strategy zap runs:" in out and "source team is now trusted" in out
    code, out = _run("strategies", "--kb", other, "--format", "json")
    assert all(r["trusted"] for r in json.loads(out))


def test_errors_are_one_line_with_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "aideploy-kb", "version": 1, "records": 1}\n{"type": "x"}\n')
    kb = str(tmp_path / "kb.db")
    with pytest.raises(SystemExit) as exit_info:
        main(["learn", "import", "--kb", kb, str(bad)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: line 2: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    with pytest.raises(SystemExit) as exit_info:
        main(["learn", "trust", "--kb", kb, "nothing"])
    assert exit_info.value.code == 1
    assert "no import source named 'nothing'" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(["learn", "report", "--kb", "postgresql+psycopg://me:pa55word-x@127.0.0.1:9/kb"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "pa55word-x" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["report"],
        ["report", "--html", "{out}"],
        ["signatures"],
        ["strategies"],
        ["export", "{out}"],
        ["trust", "some_source"],
        ["report-html", "{out}"],
        ["patterns", "list"],
    ],
)
def test_reading_a_mistyped_kb_path_is_refused_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    missing = tmp_path / "typo" / "kb.db"
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["learn", *[a.replace("{out}", out) for a in args], "--kb", str(missing)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert (
        err
        == f"error: no knowledge base at {missing} (a deployment with --kb, or learn import, creates one)\n"
    )
    assert not (tmp_path / "typo").exists() and not Path(out).exists()


def test_a_missing_kb_named_by_the_environment_is_refused_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIDEPLOY_KB", str(tmp_path / "kb.db"))
    with pytest.raises(SystemExit) as exit_info:
        main(["learn", "report"])
    assert exit_info.value.code == 2 and "no knowledge base at" in capsys.readouterr().err
    # writing commands create it
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"format": "aideploy-kb", "version": 1, "records": 0}\n')
    code, out = _run("import", str(empty))
    assert code == 0 and (tmp_path / "kb.db").exists()
    code, out = _run("report")
    assert code == 0 and "Deployments per week" in out
