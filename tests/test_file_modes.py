"""Everything aideploy writes on the operator's machine is 0600 in 0700 directories.

The real CLI deploys the example plan, exports the knowledge base, writes the HTML report, fails
once (so the debug log is written) and classifies a text (so the classifier cache is written);
then every file and directory it made is walked and its mode checked. docs/security.md lists
the files.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import paramiko
import pytest

from aideploy.core.private import create_private, open_private, private_dir, private_umask
from aideploy.engine.hostkeys import KnownHosts
from tests.support.cli import run_cli

# The example plan deploys its demo site into $AIDEPLOY_HOME/example-site (its SITE_ROOT): that
# is the deployment's target, files a web server must read, not aideploy's own data; it is the
# one thing under the home left out of the walk.
TARGET = "example-site"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose(root: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Every path under ``root`` (and ``root``) that is not a 0700 directory or 0600 file."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        here = Path(folder)
        if _mode(here) != 0o700:
            found.append(f"{here} {oct(_mode(here))}")
        for name in files:
            path = here / name
            if path.is_symlink() or _mode(path) != 0o600:
                found.append(f"{path} {oct(_mode(path))}")
    return found


@pytest.fixture
def loose_umask():
    """A umask that would leave every file world-readable: the modes must not come from it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_everything_the_cli_writes_is_private(tmp_path: Path, loose_umask: None) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)  # an existing, loose home is made private too
    os.chmod(home, 0o755)
    kbdir = tmp_path / "kb" / "new"  # created by aideploy
    kb = kbdir / "kb.sqlite"
    out = tmp_path / "out" / "new"  # created by aideploy for the export and the report
    cache = tmp_path / "cache"
    env = {"AIDEPLOY_CACHE_DIR": str(cache)}

    deployed = run_cli(tmp_path, "deploy", "--local", "--plan", "example", "--kb", str(kb), env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    exported = run_cli(tmp_path, "learn", "export", "--kb", str(kb), str(out / "kb.jsonl"))
    assert exported.returncode == 0, exported.stderr
    report = run_cli(tmp_path, "learn", "report-html", "--kb", str(kb), str(out / "report.html"))
    assert report.returncode == 0, report.stderr
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"id": "1", "text": "E: Unable to locate package nodejs"}) + "\n")
    classified = run_cli(
        tmp_path, "learn", "classify", "--kb", str(kb), "--input", str(texts), env=env
    )
    assert classified.returncode == 0, classified.stderr
    failed = run_cli(tmp_path, "deploy", "--local", "--plan", str(tmp_path / "none.toml"))
    assert failed.returncode == 2 and "no such plan file" in failed.stderr

    written = {p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()}
    assert any(p.startswith("deployments/") and p.endswith(".json") for p in written), written
    assert any(p.startswith("logs/deployment_") and p.endswith(".log") for p in written)
    assert any(p.startswith("logs/") and p.endswith(".jsonl") for p in written)
    assert "logs/debug.log" in written
    assert "metrics/aideploy.prom" in written
    assert kb.is_file() and (out / "kb.jsonl").is_file() and (out / "report.html").is_file()
    assert list(cache.rglob("classifier-*.npz")), "the classifier cache was not written"

    assert _loose(home, skip=(TARGET,)) == []
    assert _loose(tmp_path / "kb") == []
    assert _loose(tmp_path / "out") == []
    assert _loose(cache) == []


def test_sqlite_companions_take_the_kb_files_mode(tmp_path: Path, loose_umask: None) -> None:
    from aideploy.knowledge.db import make_engine, resolve_url

    kb = tmp_path / "kb.sqlite"
    engine = make_engine(resolve_url(kb))
    with engine.connect() as conn:  # WAL mode: -wal and -shm exist while a connection is open
        conn.exec_driver_sql("CREATE TABLE t (x)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        companions = sorted(p.name for p in tmp_path.iterdir())
        assert companions == ["kb.sqlite", "kb.sqlite-shm", "kb.sqlite-wal"]
        assert _loose(tmp_path) == []
    engine.dispose()


def test_an_old_world_readable_kb_and_log_are_made_private(tmp_path: Path) -> None:
    from aideploy.knowledge.db import make_engine, resolve_url

    kb = tmp_path / "kb.sqlite"
    kb.touch()
    os.chmod(kb, 0o644)
    make_engine(resolve_url(kb)).dispose()
    assert _mode(kb) == 0o600
    log = tmp_path / "debug.log"
    log.write_text("old\n")
    os.chmod(log, 0o644)
    with open_private(log) as handle:
        handle.write("new\n")
    assert _mode(log) == 0o600 and log.read_text() == "old\nnew\n"


def test_a_directory_the_operator_chose_is_never_changed(tmp_path: Path) -> None:
    chosen = tmp_path / "shared"
    chosen.mkdir()
    os.chmod(chosen, 0o755)
    private_dir(chosen)
    create_private(chosen / "kb.sqlite")
    assert _mode(chosen) == 0o755 and _mode(chosen / "kb.sqlite") == 0o600
    private_dir(chosen, tighten=True)  # aideploy's own directories are tightened
    assert _mode(chosen) == 0o700


def test_known_hosts_written_by_aideploy_is_private(tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "ssh" / "known_hosts"
    KnownHosts(path).add("server.example", 22, paramiko.ECDSAKey.generate())
    assert _loose(tmp_path / "ssh") == []


def test_private_umask_guards_files_a_library_creates(tmp_path: Path, loose_umask: None) -> None:
    with private_umask():
        (tmp_path / "made-by-a-library").write_text("x")
    (tmp_path / "after").write_text("x")
    assert _mode(tmp_path / "made-by-a-library") == 0o600
    assert _mode(tmp_path / "after") == 0o644  # the umask is back


@pytest.mark.parametrize(("configured", "expected"), [(None, 0o600), ("0644", 0o644)])
def test_metrics_textfile_mode_is_private_unless_configured(
    tmp_path: Path, configured: str | None, expected: int
) -> None:
    textfile = tmp_path / "collector" / "aideploy.prom"
    metrics: dict[str, str] = {"textfile": str(textfile)}
    if configured:
        metrics["textfile_mode"] = configured
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": "1.0", "metrics": metrics}))
    kb = str(tmp_path / "kb.sqlite")
    proc = run_cli(tmp_path, "--config", str(config), "deploy", "--local", "--kb", kb)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _mode(textfile) == expected
    assert "aideploy_last_deployment_success 1.0" in textfile.read_text()
