"""End to end: deploy the sample app over SSH into a throwaway host with ``--plan stack``.

Real sshd, PostgreSQL, pip and npm downloads, gunicorn and nginx, all inside the throwaway host.
The module shares one host: the first deploy is cold, the second finds every step done.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.engine.plan import BUILTIN_PLANS
from aideploy.engine.runner import Runner
from aideploy.steps.stack.releases import list_releases, rollback
from tests.support.throwaway import ThrowawayHost, available, free_port, throwaway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

__all__ = ["throwaway"]  # the fixture

SAMPLEAPP = Path(__file__).resolve().parent.parent / "examples" / "sampleapp"
REPO_INSIDE = "/srv/git/sampleapp.git"
LOCK = "/var/lock/aideploy-sampleapp.lock"
PLAN = "stack" if "stack" in BUILTIN_PLANS else "aideploy.steps.stack.plan:plan"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=aideploy tests", "-c", "user.email=tests@aideploy.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repo(host: ThrowawayHost, work: Path) -> Path:
    """A bare repo inside the host holding the sample app on ``main``; returns the work tree."""
    tree = work / "sampleapp"
    shutil.copytree(
        SAMPLEAPP, tree, ignore=shutil.ignore_patterns("node_modules", "dist", "__pycache__")
    )
    _git("init", "-q", "-b", "main", cwd=tree)
    _git("add", "-A", cwd=tree)
    _git("commit", "-q", "-m", "sample app", cwd=tree)
    _git("clone", "-q", "--bare", str(tree), str(work / "bare.git"), cwd=work)
    publish(host, work)
    return tree


def publish(host: ThrowawayHost, work: Path) -> None:
    """Copy the bare repo (objects and refs) into the host."""
    inside = host.path(REPO_INSIDE)
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work / "bare.git", inside, dirs_exist_ok=True)


def commit(host: ThrowawayHost, work: Path, message: str, files: dict[str, str]) -> str:
    """Commit ``files`` (path relative to the app -> content) on main and publish it."""
    tree = work / "sampleapp"
    for name, content in files.items():
        (tree / name).write_text(content)
    _git("add", "-A", cwd=tree)
    _git("commit", "-q", "--allow-empty", "-m", message, cwd=tree)
    _git("push", "-q", str(work / "bare.git"), "main", cwd=tree)
    publish(host, work)
    return _git("rev-parse", "HEAD", cwd=tree)


class Deployer:
    def __init__(self, host: ThrowawayHost, work: Path) -> None:
        self.host = host
        self.work = work
        self.http_port = free_port()
        self.https_port = free_port()
        self.db_port = free_port()
        self.config = work / "ai_deployment_config.json"
        self.config.write_text(
            json.dumps(
                {
                    "version": "1.0",
                    "ssh": {"known_hosts": str(work / "known_hosts"), "connect_retries": 2},
                    "deployment": {"max_retries": 0, "command_timeout": 900},
                }
            )
        )

    def settings(self) -> list[str]:
        values = {
            "APP_REPO": REPO_INSIDE,
            "APP_REF": "main",
            "HTTP_PORT": str(self.http_port),
            "HTTPS_PORT": str(self.https_port),
            "DB_PORT": str(self.db_port),
            "DOMAIN": "sampleapp.test",
        }
        out = []
        for key, value in values.items():
            out += ["--set", f"{key}={value}"]
        return out

    def deploy(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "deploy",
            "--accept-new-host-key",
            "--plan",
            PLAN,
            *self.settings(),
            *extra,
            timeout=900,
        )

    def cli(
        self, command: str, *args: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """An aideploy command against the throwaway host (deploy, rollback...)."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "aideploy",
                "--config",
                str(self.config),
                command,
                "--server",
                "127.0.0.1",
                "--port",
                str(self.host.port),
                "--user",
                "root",
                "--key-file",
                str(self.host.key_file),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=self.work,
            env={**os.environ, "AIDEPLOY_HOME": str(self.work / "home"), "NO_COLOR": "1"},
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def get(self, path: str, *, tls: bool = False) -> tuple[int, bytes]:
        scheme, port = ("https", self.https_port) if tls else ("http", self.http_port)
        request = urllib.request.Request(
            f"{scheme}://127.0.0.1:{port}{path}", headers={"Host": "sampleapp.test"}
        )
        context = ssl._create_unverified_context() if tls else None  # self-signed on purpose
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()


@pytest.fixture(scope="module")
def deployed(
    throwaway: ThrowawayHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployer, subprocess.CompletedProcess[str], float]]:
    work = tmp_path_factory.mktemp("stack-e2e")
    make_repo(throwaway, work)
    deployer = Deployer(throwaway, work)
    started = time.monotonic()
    first = deployer.deploy()
    took = time.monotonic() - started
    print(f"cold deploy: {took:.1f}s")
    yield deployer, first, took


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-6000:]}\nSTDERR:\n{result.stderr[-6000:]}"


@pytest.mark.timeout(900)
def test_cold_deploy_serves_frontend_and_api_through_nginx(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    assert "completed" in first.stdout
    status, body = deployer.get("/")
    assert status == 200 and b"aideploy sample app" in body
    status, body = deployer.get("/app.js")
    assert status == 200 and len(body) > 1000
    status, body = deployer.get("/api/health/")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok" and health["database"] == "postgresql"
    status, _ = deployer.get("/api/health/", tls=True)
    assert status == 200
    # the generated database password stays on the server
    db_env = deployer.host.run(
        "stat -c %a /etc/aideploy/sampleapp/db.env; cat /etc/aideploy/sampleapp/db.env"
    )
    mode, line = db_env.stdout.split()
    assert mode == "600" and line.startswith("DB_PASSWORD=")
    password = line.split("=", 1)[1].encode()
    assert len(password) >= 32
    for path in deployer.work.rglob("*"):
        if path.is_file():
            assert password not in path.read_bytes(), f"database password in {path}"
    assert password.decode() not in first.stdout + first.stderr


@pytest.mark.timeout(900)
def test_second_deploy_skips_done_steps(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    started = time.monotonic()
    second = deployer.deploy()
    took = time.monotonic() - started
    print(f"second deploy: {took:.1f}s")
    assert second.returncode == 0, _explain(second)
    skipped = [line for line in second.stdout.splitlines() if "already done, skipped" in line]
    names = {line.split()[1].rstrip(":") for line in skipped}
    assert {
        "setup_authentication",
        "install_dependencies",
        "handle_nodejs_conflicts",
        "setup_database",
        "download_application",
        "configure_backend",
        "configure_frontend",
        "setup_webserver",
        "setup_services",
    } <= names, second.stdout
    status, _ = deployer.get("/api/health/")
    assert status == 200
    releases = deployer.host.run("ls /opt/sampleapp/releases").stdout.split()
    assert len(releases) == 1  # nothing changed: no new release


def _psql(host: ThrowawayHost, deployer: Deployer, sql: str) -> str:
    result = host.run(
        f"cd / && runuser -u postgres -- psql -X -At -p {deployer.db_port} -d sampleapp -c {sql!r}"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _live(host: ThrowawayHost) -> str:
    return host.run("readlink /opt/sampleapp/current").stdout.strip()


def _runner(host: ThrowawayHost) -> Iterator[Runner]:
    with host.connector() as connector:
        yield Runner(connector)


SEED_MIGRATION = """\
from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("notes", "Note").objects.create(text="added by v2")


class Migration(migrations.Migration):
    dependencies = (("notes", "0001_initial"),)
    operations = (migrations.RunPython(seed, migrations.RunPython.noop),)
"""


@pytest.mark.timeout(600)
def test_second_concurrent_deploy_is_refused_by_the_lock(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host = deployer.host
    other = '{"deployment_id": "20990101-000000-abcdef", "who": "someone", "since": "now"}'
    host.run(f"printf '%s\\n' '{other}' > /var/lock/aideploy-sampleapp.lock", check=True)
    refused = deployer.deploy()
    assert refused.returncode != 0
    assert "deploy lock held" in refused.stderr + refused.stdout
    assert "20990101-000000-abcdef" in refused.stderr + refused.stdout
    assert "BREAK_LOCK" in refused.stderr + refused.stdout
    broken = deployer.deploy("--set", "BREAK_LOCK=20990101-000000-abcdef")
    assert broken.returncode == 0, _explain(broken)
    assert not host.exists(LOCK)


@pytest.mark.timeout(900)
def test_new_release_rollback_with_database_and_broken_release(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host, work = deployer.host, deployer.work
    v1 = _live(host)
    _psql(host, deployer, "INSERT INTO notes_note (text, created) VALUES ('before v2', now())")

    commit(host, work, "seed a note", {"backend/notes/migrations/0002_seed.py": SEED_MIGRATION})
    v2_deploy = deployer.deploy()
    assert v2_deploy.returncode == 0, _explain(v2_deploy)
    v2 = _live(host)
    assert v2 != v1
    assert (
        _psql(host, deployer, "SELECT text FROM notes_note ORDER BY id") == "before v2\nadded by v2"
    )
    assert json.loads(deployer.get("/api/health/")[1])["notes"] == 2

    for runner in _runner(host):
        names = [r.name for r in list_releases(runner)]
        assert [f"releases/{n}" for n in names] == [v1, v2]
        back = rollback(runner, with_database=True, DB_PORT=str(deployer.db_port))
        assert back.ok, back.output
    assert _live(host) == v1
    assert _psql(host, deployer, "SELECT text FROM notes_note ORDER BY id") == "before v2"
    status, body = deployer.get("/api/health/")
    assert status == 200 and json.loads(body)["notes"] == 1

    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    broken_views = views.replace(
        '"""200 when', 'raise RuntimeError("broken on purpose")\n    """200 when'
    )
    assert broken_views != views
    commit(host, work, "break the health check", {"backend/notes/views.py": broken_views})
    broken = deployer.deploy()
    assert broken.returncode != 0
    assert "failed its health check" in broken.stdout + broken.stderr
    assert _live(host) == v1  # the previous release keeps serving
    status, body = deployer.get("/api/health/")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert deployer.get("/")[0] == 200
    assert not host.exists(LOCK)

    # forward again to a named release, through the CLI
    again = deployer.cli(
        "rollback", "--to", v2.split("/")[-1], "--set", f"DB_PORT={deployer.db_port}"
    )
    assert again.returncode == 0, _explain(again)
    assert "rolled back" in again.stdout
    assert _live(host) == v2
    listing = deployer.cli("rollback", "--list")
    assert listing.returncode == 0 and v2.split("/")[-1] in listing.stdout
    assert deployer.get("/api/health/")[0] == 200


@pytest.mark.timeout(600)
def test_failed_nginx_test_keeps_the_old_site_and_a_stale_lock_is_broken_explicitly(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host = deployer.host
    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    commit(host, deployer.work, "a working app", {"backend/notes/views.py": views})
    site = "/etc/nginx/sites-available/aideploy-sampleapp"
    before = host.path(site).read_text()
    host.run("echo 'this is not nginx syntax' > /etc/nginx/conf.d/broken.conf", check=True)
    # a new domain makes the site change, so nginx -t runs (and fails on the broken file)
    failed = deployer.deploy("--set", "DOMAIN=other.test")
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "setup_webserver" in output and "configuration test failed" in output
    assert host.path(site).read_text() == before  # the previous site is back
    assert deployer.get("/api/health/")[0] == 200  # and nginx still serves it

    # the failed deployment (dead now) still holds the lock: a new deploy is refused ...
    held = host.read(LOCK)
    assert held is not None
    owner = json.loads(held)
    host.run("rm /etc/nginx/conf.d/broken.conf", check=True)
    refused = deployer.deploy()
    assert refused.returncode != 0 and "deploy lock held" in refused.stdout + refused.stderr
    # ... until it is broken by naming that deployment
    fixed = deployer.deploy("--set", f"BREAK_LOCK={owner['deployment_id']}")
    assert fixed.returncode == 0, _explain(fixed)
    assert deployer.get("/")[0] == 200
