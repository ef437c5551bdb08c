"""End to end: deploy the sample app over SSH into a throwaway host with ``--plan stack``.

Real sshd, PostgreSQL, pip and npm downloads, gunicorn and nginx, all inside the throwaway host.
The module shares one host: the first deploy is cold, the second finds every step done.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aideploy.cli.demo import Ports, set_options, stack_settings
from aideploy.engine.plan import BUILTIN_PLANS
from aideploy.engine.runner import Runner
from aideploy.steps.stack.releases import list_releases, rollback
from tests.support.throwaway import (
    AppRepo,
    ThrowawayHost,
    available,
    http_get,
    throwaway,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

__all__ = ["throwaway"]  # the fixture

SAMPLEAPP = Path(__file__).resolve().parent.parent / "examples" / "sampleapp"
REPO_INSIDE = "/srv/git/sampleapp.git"
LOCK = "/var/lock/aideploy-sampleapp.lock"
DOMAIN = "sampleapp.test"
PLAN = "stack" if "stack" in BUILTIN_PLANS else "aideploy.steps.stack.plan:plan"


class Deployer:
    def __init__(self, host: ThrowawayHost, work: Path) -> None:
        self.host = host
        self.work = work
        self.repo = AppRepo.create(host, SAMPLEAPP, work, REPO_INSIDE)
        self.ports = Ports.free()
        self.http_port, self.https_port, self.db_port = (
            self.ports.http,
            self.ports.https,
            self.ports.db,
        )
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
        return set_options(stack_settings(REPO_INSIDE, self.ports, DOMAIN))

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
        return self.aideploy(command, *self.host.ssh_options(), *args, timeout=timeout)

    def aideploy(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``aideploy ARGS`` with this module's configuration, state and logs."""
        return subprocess.run(
            [sys.executable, "-m", "aideploy", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            cwd=self.work,
            env={
                **os.environ,
                "AIDEPLOY_HOME": str(self.work / "home"),
                "AIDEPLOY_KB": str(self.work / "knowledge.db"),  # never the user's own
                "NO_COLOR": "1",
            },
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def get(self, path: str, *, tls: bool = True) -> tuple[int, bytes]:
        # with TLS on, nginx answers plain HTTP with a 301 to HTTPS (docs/security.md)
        if not tls:
            return http_get(f"http://127.0.0.1:{self.http_port}{path}", host_header=DOMAIN)
        certificate = self.host.read("/etc/aideploy/sampleapp/tls/fullchain.pem")
        assert certificate, "no certificate on the host"
        return http_get(
            f"https://127.0.0.1:{self.https_port}{path}",
            host_header=DOMAIN,
            certificate=certificate,
        )


@pytest.fixture(scope="module")
def deployed(
    throwaway: ThrowawayHost, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Deployer, subprocess.CompletedProcess[str], float]]:
    work = tmp_path_factory.mktemp("stack-e2e")
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
    assert refused.returncode == 6, _explain(refused)  # at once: a held lock is not retried
    assert "recover" not in (refused.stderr + refused.stdout).lower()
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
    host = deployer.host
    v1 = _live(host)
    _psql(host, deployer, "INSERT INTO notes_note (text, created) VALUES ('before v2', now())")

    deployer.repo.commit("seed a note", {"backend/notes/migrations/0002_seed.py": SEED_MIGRATION})
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
    deployer.repo.commit("break the health check", {"backend/notes/views.py": broken_views})
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
def test_failed_deploy_keeps_the_old_site_and_releases_the_lock_a_resume_takes_it_back(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host = deployer.host
    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    deployer.repo.commit("a working app", {"backend/notes/views.py": views})
    site = "/etc/nginx/sites-available/aideploy-sampleapp"
    before = host.path(site).read_text()
    host.run("echo 'this is not nginx syntax' > /etc/nginx/conf.d/broken.conf", check=True)
    # a new domain makes the site change, so nginx -t runs (and fails on the broken file)
    failed = deployer.deploy("--set", "DOMAIN=other.test")
    assert failed.returncode == 4, _explain(failed)
    output = failed.stdout + failed.stderr
    assert "setup_webserver" in output and "configuration test failed" in output
    assert host.path(site).read_text() == before  # the previous site is back
    assert deployer.get("/api/health/")[0] == 200  # and nginx still serves it

    # the deployment ended FAILED in step 9: its lock is given back, not left for a person
    assert not host.exists(LOCK)
    found = re.search(r"aideploy resume (\S+)", output)
    assert found, output
    failed_id = found.group(1)
    host.run("rm /etc/nginx/conf.d/broken.conf", check=True)

    # its resume takes the lock again: refused (exit 6) while another deployment holds it ...
    other = '{"deployment_id": "20990101-000000-fedcba", "who": "someone", "since": "now"}'
    host.run(f"printf '%s\\n' '{other}' > {LOCK}", check=True)
    refused = deployer.aideploy("resume", failed_id)
    assert refused.returncode == 6, _explain(refused)
    assert "deploy lock held" in refused.stderr and "20990101-000000-fedcba" in refused.stderr
    assert json.loads(host.read(LOCK) or "{}")["deployment_id"] == "20990101-000000-fedcba"
    status = deployer.aideploy("status", failed_id)
    assert f"deployment {failed_id}: failed" in status.stdout, status.stdout
    assert "step 9/11" in status.stdout  # unchanged by the refused resume

    # ... and continues at step 9 once it is free, releasing the lock at the end
    host.run(f"rm {LOCK}", check=True)
    resumed = deployer.aideploy("resume", failed_id, timeout=900)
    assert resumed.returncode == 0, _explain(resumed)
    assert f"Resuming {failed_id} at step 9/11" in resumed.stdout
    assert not host.exists(LOCK)
    assert "server_name other.test" in host.path(site).read_text()
    health = http_get(
        f"https://127.0.0.1:{deployer.https_port}/api/health/",
        host_header="other.test",
        certificate=host.read("/etc/aideploy/sampleapp/tls/fullchain.pem"),
    )
    assert health[0] == 200

    # nothing is left behind that refuses the next deploy
    again = deployer.deploy()
    assert again.returncode == 0, _explain(again)
    assert deployer.get("/")[0] == 200


class RequestLoop:
    """Requests ``/`` and ``/api/health/`` through nginx (HTTPS, a new connection each time) in a
    thread until stopped; counts them, keeps every failure and what each health answer said."""

    def __init__(self, deployer: Deployer) -> None:
        self.deployer = deployer
        self.done = threading.Event()
        self.requests = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            for path in ("/", "/api/health/"):
                self.requests += 1
                try:
                    status, body = self.deployer.get(path)
                except OSError as exc:  # URLError and HTTPError (a 502) are OSErrors
                    self.failures.append(f"{path}: {exc}")
                    continue
                if status != 200:
                    self.failures.append(f"{path}: HTTP {status}")
                elif path == "/api/health/":
                    self.versions.append(str(json.loads(body).get("version", "old")))

    def __enter__(self) -> RequestLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=60)


def _gunicorn_starts(host: ThrowawayHost) -> int:
    log = host.read("/opt/sampleapp/shared/log/gunicorn.log") or ""
    return log.count("Starting gunicorn")


@pytest.mark.timeout(900)
def test_a_redeploy_of_a_new_commit_drops_no_request(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host = deployer.host
    before = _live(host)
    starts = _gunicorn_starts(host)
    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    new_views = views.replace('{"status": "ok",', '{"status": "ok", "version": "new",')
    assert new_views != views
    deployer.repo.commit("say which version answers", {"backend/notes/views.py": new_views})
    with RequestLoop(deployer) as loop:
        # the loop runs before, during and after the switch
        while loop.requests < 20:
            time.sleep(0.05)
        redeploy = deployer.deploy()
        seen = loop.requests
        while loop.requests < seen + 20:
            time.sleep(0.05)
    print(f"redeploy under load: {loop.requests} requests, {len(loop.failures)} failed")
    assert redeploy.returncode == 0, _explain(redeploy)
    assert _live(host) != before
    assert loop.failures == [], f"{len(loop.failures)} of {loop.requests}: {loop.failures[:5]}"
    assert loop.requests >= 100, loop.requests  # enough requests to have seen a gap
    # the old code answered, then the new one, and only the new one once it had taken over
    assert loop.versions[0] == "old" and loop.versions[-1] == "new"
    switched = loop.versions.index("new")
    assert set(loop.versions[switched:]) == {"new"}, loop.versions[switched:]
    # the release's server booted once: the one that passed the check is the one serving
    assert _gunicorn_starts(host) == starts + 1
    live = host.run("/usr/local/sbin/aideploy-sampleapp live").stdout.strip()
    assert live.startswith(_live(host).split("/")[-1] + ".")
    assert host.run("/usr/local/sbin/aideploy-sampleapp status").returncode == 0
    pids = host.run("ls /run/aideploy-sampleapp").stdout.split()
    assert pids.count(f"{live}.pid") == 1 and len([p for p in pids if p.endswith(".pid")]) == 1

    # a restart of the same release (app.env or the script changed) is a switch to the other slot
    with RequestLoop(deployer) as again:
        while again.requests < 20:
            time.sleep(0.05)
        restarted = host.run("/usr/local/sbin/aideploy-sampleapp restart")
        seen = again.requests
        while again.requests < seen + 20:
            time.sleep(0.05)
    assert restarted.returncode == 0, restarted.stderr
    assert again.failures == [], again.failures[:5]
    other = host.run("/usr/local/sbin/aideploy-sampleapp live").stdout.strip()
    assert other != live and other.rsplit(".", 1)[0] == live.rsplit(".", 1)[0]
    assert host.run("ls /run/aideploy-sampleapp").stdout.split().count(f"{live}.pid") == 0


def _site_packages_file(host: ThrowawayHost, release: str) -> str:
    found = host.run(f"ls -d /opt/sampleapp/{release}/venv/lib/python3*/site-packages/django")
    return found.stdout.strip() + "/__init__.py"


@pytest.mark.timeout(900)
def test_a_backend_change_reuses_the_environments_and_rolls_back_to_its_own(
    deployed: tuple[Deployer, subprocess.CompletedProcess[str], float],
) -> None:
    deployer, first, _ = deployed
    assert first.returncode == 0, _explain(first)
    host = deployer.host
    before = _live(host)
    views = (SAMPLEAPP / "backend" / "notes" / "views.py").read_text()
    changed = views.replace('{"status": "ok",', '{"status": "ok", "version": "cached",')
    deployer.repo.commit("a one-file backend change", {"backend/notes/views.py": changed})
    started = time.monotonic()
    cached = deployer.aideploy(
        "-v",
        "deploy",
        *host.ssh_options(),
        "--accept-new-host-key",
        "--plan",
        PLAN,
        *deployer.settings(),
        timeout=900,
    )
    took = time.monotonic() - started
    print(f"one-file backend change: {took:.1f}s")
    assert cached.returncode == 0, _explain(cached)
    assert re.search(
        r"python environment: reused from release \S+ .*0 packages installed", cached.stdout
    )
    assert "frontend: build reused from release" in cached.stdout, cached.stdout
    after = _live(host)
    assert after != before
    assert json.loads(deployer.get("/api/health/")[1]).get("version") == "cached"
    # its own copy: another file than the earlier release's, and scripts naming its own venv
    ino = host.run(
        f"stat -c %i {_site_packages_file(host, before)} {_site_packages_file(host, after)}"
    ).stdout.split()
    assert len(ino) == 2 and ino[0] != ino[1]
    gunicorn = host.read(f"/opt/sampleapp/{after}/venv/bin/gunicorn") or ""
    assert gunicorn.startswith(f"#!/opt/sampleapp/{after}/venv/bin/python")

    for runner in _runner(host):
        back = rollback(runner, DB_PORT=str(deployer.db_port))
        assert back.ok, back.output
    assert _live(host) == before
    # the cached release is gone altogether: the old one runs on its own environment
    host.run(f"rm -rf /opt/sampleapp/{after}", check=True)
    status, body = deployer.get("/api/health/")
    assert status == 200 and json.loads(body).get("version") != "cached"
    live = host.run("/usr/local/sbin/aideploy-sampleapp live").stdout.strip()
    pid = host.read(f"/run/aideploy-sampleapp/{live}.pid")
    assert pid
    command = host.run(f"tr '\\0' ' ' < /proc/{pid.strip()}/cmdline").stdout
    assert f"/opt/sampleapp/{before}/venv/bin/gunicorn" in command, command
