"""``deploy --check`` (and ``--dry-run``): unset variables named before connecting; per-step
verdicts and diffs from a real host, which is left byte-identical."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.engine.preview import file_change, mask_env
from tests.support.cli import run_cli
from tests.support.throwaway import ThrowawayHost, available, throwaway
from tests.test_stack_e2e import SAMPLEAPP, Deployer

__all__ = ["throwaway"]  # the fixture

# -- before connecting --------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    """A port that accepts connections, to see whether anything connected to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    yield server, server.getsockname()[1]
    server.close()


def _connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("flag", ["--check", "--dry-run"])
def test_unset_required_variables_are_named_before_any_connection(
    tmp_path: Path, listener: tuple[socket.socket, int], flag: str
) -> None:
    server, port = listener
    proc = run_cli(
        tmp_path, "deploy", "--plan", "stack", "--server", "127.0.0.1", "--port", str(port), flag
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "APP_REPO (for download_application)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not _connected(server)


def test_every_unset_variable_of_a_plan_file_is_named_and_a_real_deploy_stops_too(
    tmp_path: Path, listener: tuple[socket.socket, int]
) -> None:
    server, port = listener
    plan = tmp_path / "plan.toml"
    plan.write_text(
        """
name = "needs"
[env]
SITE = ""
[[steps]]
name = "one"
requires = ["SITE", "OWNER"]
commands = ['echo "$SITE"']
[[steps]]
name = "two"
requires = ["TOKEN_NAME", "SITE"]
commands = ['echo two']
"""
    )
    target = ("--server", "127.0.0.1", "--port", str(port))
    for extra in (["--check"], ["--dry-run", "--offline"], []):
        proc = run_cli(tmp_path, "deploy", "--plan", str(plan), *target, *extra)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        line = proc.stderr.strip()
        assert "SITE (for one), OWNER (for one), TOKEN_NAME (for two)" in line, line
    assert not _connected(server)
    assert not (tmp_path / "home" / "deployments").exists()
    done = run_cli(
        tmp_path, "deploy", "--local", "--plan", str(plan), "--set", "SITE=s", "--set",
        "OWNER=o", "--set", "TOKEN_NAME=t", "--check", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [s["verdict"] for s in json.loads(done.stdout)["steps"]] == ["unknown", "unknown"]


def test_check_json_schema_and_usage_errors(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "deploy", "--local", "--check", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"schema", "plan", "target", "steps", "summary"}
    assert doc["schema"] == 1 and doc["plan"] == "example"
    assert set(doc["summary"]) == {"skip", "change", "unknown"}
    assert sum(doc["summary"].values()) == len(doc["steps"]) == 6
    for step in doc["steps"]:
        assert set(step) == {"name", "verdict", "reason", "files"}
    assert not (tmp_path / "home" / "example-site").exists()  # nothing was done
    assert not (tmp_path / "home" / "deployments").exists()
    for args in (["--json"], ["--offline"], ["--check", "--offline", "--json"]):
        bad = run_cli(tmp_path, "deploy", "--local", *args)
        assert bad.returncode == 2 and ("--check" in bad.stderr or "--offline" in bad.stderr), (
            bad.stderr
        )
        assert len(bad.stderr.splitlines()) == 1


def test_env_file_diff_masks_secret_values() -> None:
    old = "SECRET_KEY=aaaa1111\nDATABASE_URL=postgresql://u:pw1@h/d\nALLOWED_HOSTS=a\n"
    new = "SECRET_KEY=aaaa1111\nDATABASE_URL=postgresql://u:pw2@h/d\nALLOWED_HOSTS=b\n"
    change = file_change("/x/app.env", old, new, env_file=True)
    assert change is not None
    assert "-ALLOWED_HOSTS=a" in change.diff and "+ALLOWED_HOSTS=b" in change.diff
    for secret in ("aaaa1111", "pw1", "pw2"):
        assert secret not in change.diff
    only_secret = file_change("/x/app.env", "SECRET_KEY=a\n", "SECRET_KEY=b\n", env_file=True)
    assert only_secret is not None and "secret values change" in only_secret.diff
    assert file_change("/x", "same\n", "same\n") is None
    assert mask_env("+API_TOKEN=abc\n") == "+API_TOKEN=***\n"


# -- against a deployed host --------------------------------------------------------------------

WATCHED = (
    "/opt/sampleapp",
    "/etc/nginx",
    "/etc/aideploy",
    "/etc/systemd/system",
    "/usr/local/sbin",
    "/var/lock",
)


def _snapshot(host: ThrowawayHost) -> dict[str, str]:
    """Every file under the watched directories (but the app's logs): path -> sha256 (or the
    target of a symbolic link)."""
    found: dict[str, str] = {}
    for top in WATCHED:
        root = host.path(top)
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            inside = top + "/" + str(path.relative_to(root))
            if "/shared/log/" in inside:
                continue
            if path.is_symlink():
                found[inside] = "-> " + str(path.readlink())
            elif path.is_file():
                found[inside] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[inside] = "dir"
    return found


def _verdicts(proc_stdout: str) -> dict[str, str]:
    return {s["name"]: s["verdict"] for s in json.loads(proc_stdout)["steps"]}


@pytest.mark.slow
@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_check_after_a_deploy_names_exactly_the_steps_one_changed_file_changes(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    deployer = Deployer(throwaway, tmp_path)
    first = deployer.deploy()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = _snapshot(throwaway)
    assert "/var/lock/aideploy-sampleapp.lock" not in before

    started = time.monotonic()
    same = deployer.cli("deploy", "--plan", "stack", *deployer.settings(), "--check", "--json")
    print(f"deploy --check after a deploy: {time.monotonic() - started:.1f}s")
    assert same.returncode == 0, same.stderr
    assert set(_verdicts(same.stdout).values()) == {"skip"}, same.stdout

    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    deployer.repo.commit("one file", {"backend/notes/views.py": views + "\n# changed\n"})
    changed = deployer.cli("deploy", "--plan", "stack", *deployer.settings(), "--check", "--json")
    assert changed.returncode == 0, changed.stderr
    verdicts = _verdicts(changed.stdout)
    assert {name for name, v in verdicts.items() if v == "change"} == {
        "download_application",
        "configure_backend",
        "configure_frontend",
        "final_verification",
    }, changed.stdout
    assert {v for v in verdicts.values()} == {"change", "skip"}

    # a rendered file: the nginx site and app.env diffs, the secret values masked
    secret = (throwaway.read("/opt/sampleapp/shared/app.env") or "").splitlines()[0]
    assert secret.startswith("SECRET_KEY=") and len(secret) > 20
    moved = deployer.cli(
        "deploy", "--plan", "stack", *deployer.settings(), "--set", "DOMAIN=moved.test",
        "--dry-run",
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    text = moved.stdout
    added = [line.strip() for line in text.splitlines() if line.strip().startswith("+")]
    assert any("server_name" in line and "moved.test" in line for line in added), text
    assert "+ALLOWED_HOSTS=moved.test,localhost,127.0.0.1" in added, text
    assert " SECRET_KEY=***" in text  # context lines are masked too
    db_password = (throwaway.read("/etc/aideploy/sampleapp/db.env") or "").split("=", 1)[-1]
    assert db_password.strip() and db_password.strip() not in text
    assert secret.split("=", 1)[1] not in text

    assert _snapshot(throwaway) == before  # byte-identical, and no lock left
