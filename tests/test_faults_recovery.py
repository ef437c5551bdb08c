"""Real faults injected into a throwaway host, recovered by the right strategy, learned.

Each scenario deploys a small TOML plan that exercises the failing piece for real (nginx binding
a port, psql against PostgreSQL, apt-get under the real dpkg lock, nginx -t, a write as the deploy
user, a write on a full filesystem) with the aideploy CLI over SSH and its own knowledge base.
The fault is injected, the deploy recovers and completes, the knowledge base records the error
class and the strategy; then the same fault is injected again and the second deploy, with the
same knowledge base, recovers on the first attempt (one recovery, two step runs).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    Run,
    Scenario,
    assert_recovered_first_try,
    toml_plan,
    wait_until,
)
from tests.support.throwaway import ThrowawayHost, available, free_port, throwaway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

__all__ = ["throwaway"]  # the fixture


def _recorded(scenario: Scenario, run: Run) -> list[tuple[str, str, str]]:
    return [(o.error_class, o.strategy, o.outcome) for o in scenario.outcomes(run.deployment_id)]


def _twice(
    scenario: Scenario,
    plan: Path,
    inject: Callable[[], None],
    *,
    on_error: Callable[[], None] | None = None,
    step: str,
    strategy: str,
    error_class: str,
) -> tuple[Run, Run]:
    """Inject, deploy, check; inject again, deploy with the same KB, check the first try."""
    runs = []
    for encounter in (1, 2):
        inject()
        run = scenario.deploy(plan, on_error=on_error)
        print(f"{plan.stem} encounter {encounter}: {run.seconds:.1f}s")
        assert_recovered_first_try(run, step, strategy, error_class)
        assert _recorded(scenario, run) == [(error_class, strategy, "recovered")], run.explain()
        runs.append(run)
    second = runs[1]
    # the second choice was ranked with what the first deploy recorded (same or near signature)
    assert re.search(
        rf"recovery: {strategy} \(.*(?:same signature|sim \d+): [\d.]+ recovered / 0\.0 failed",
        second.completed.stdout,
    ), second.explain()
    if not scenario.shared_kb:
        stats = scenario.stats()
        assert stats[strategy].attempts == 2, stats
    return runs[0], runs[1]


# -- a port held by a foreign process ------------------------------------------------------------

HOLD = (
    "import socket, sys, time; s = socket.socket(); "
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(600)"
)

WEB_CONF = (
    'mkdir -p "$WEB_DIR" && printf "%s\\n" "pid $WEB_DIR/nginx.pid;" "error_log stderr;" '
    '"events {}" "http { access_log off; server { listen 127.0.0.1:$HTTP_PORT; '
    'location / { return 200 \'web-ok\'; } } }" > "$WEB_DIR/nginx.conf"'
)
WEB_START = (
    'if [ -s "$WEB_DIR/nginx.pid" ] && kill -0 "$(cat "$WEB_DIR/nginx.pid")" 2>/dev/null; '
    'then nginx -c "$WEB_DIR/nginx.conf" -s reload; else nginx -c "$WEB_DIR/nginx.conf"; fi'
)


def test_port_held_by_a_foreign_process_is_freed_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    port = free_port()
    web = "/run/faults-web"
    scenario = Scenario(host, tmp_path, auto_approve=True)  # free_port is high-risk
    plan = scenario.plan(
        "port",
        toml_plan(
            "faults-port",
            [
                {
                    "name": "start_web",
                    "description": "nginx serving on HTTP_PORT",
                    "commands": [WEB_CONF, WEB_START],
                    "verify": 'curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/" | grep -q web-ok',
                }
            ],
            {"HTTP_PORT": str(port), "WEB_DIR": web},
        ),
    )

    def inject() -> None:
        host.run(f'[ -s {web}/nginx.pid ] && kill "$(cat {web}/nginx.pid)"; sleep 0.3')
        host.run(f'setsid python3 -c "{HOLD}" {port} >/dev/null 2>&1 </dev/null &', check=True)
        wait_until(host, f"ss -H -ltn 'sport = :{port}' | grep -q LISTEN")

    try:
        _twice(
            scenario,
            plan,
            inject,
            step="start_web",
            strategy="free_port",
            error_class="port_in_use",
        )
        # the holder is gone for real and nginx serves the port
        listening = host.run(f"ss -H -ltnp 'sport = :{port}'").stdout
        assert "nginx" in listening and "python3" not in listening, listening
        assert host.run(f"curl -fsS -m 5 http://127.0.0.1:{port}/").stdout == "web-ok"
    finally:
        host.run(f'[ -s {web}/nginx.pid ] && kill "$(cat {web}/nginx.pid)"; pkill -f "{HOLD}"')


# -- PostgreSQL stopped before the step that needs it -------------------------------------------


@pytest.fixture(scope="module")
def pg_port(throwaway: ThrowawayHost) -> Iterator[str]:
    """The host's cluster on a free port (the network is shared with the real machine)."""
    port = str(free_port())
    found = throwaway.run("pg_lsclusters -h | awk 'NR==1 {print $1, $2}'").stdout.split()
    if len(found) != 2:
        pytest.skip("no PostgreSQL cluster on this machine")
    version, name = found
    throwaway.run(
        f"sed -i 's/^#\\?port = .*/port = {port}/' /etc/postgresql/{version}/{name}/postgresql.conf",
        check=True,
    )
    yield port
    throwaway.run("service postgresql stop")


def test_postgresql_stopped_is_started_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path, pg_port: str
) -> None:
    host = throwaway
    scenario = Scenario(host, tmp_path)
    plan = scenario.plan(
        "database",
        toml_plan(
            "faults-database",
            [
                {
                    "name": "migrate",
                    "description": "schema change through psql",
                    "commands": [
                        'cd / && runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -p "$DB_PORT" '
                        "-Atc 'CREATE TABLE IF NOT EXISTS faults_marker (deployment text); "
                        "INSERT INTO faults_marker VALUES (current_user)'"
                    ],
                }
            ],
            {"DB_PORT": pg_port},
        ),
    )

    def inject() -> None:
        host.run("service postgresql stop")
        assert host.run("pg_lsclusters -h | grep -q online").returncode != 0

    _twice(
        scenario,
        plan,
        inject,
        step="migrate",
        strategy="start_service",
        error_class="database_connection",
    )
    rows = host.run(
        f"cd / && runuser -u postgres -- psql -X -p {pg_port} -Atc "
        "'SELECT count(*) FROM faults_marker'"
    )
    assert rows.stdout.strip() == "2", rows.stderr


# -- the dpkg lock held by another process -------------------------------------------------------

RELEASE = "/run/faults-apt-done"
# holds the lock the way apt and unattended-upgrades do (fcntl) until told it is done (or 90 s)
LOCK_HOLDER = (
    "import fcntl, os, time; f = open('/var/lib/dpkg/lock-frontend', 'w'); "
    "fcntl.lockf(f, fcntl.LOCK_EX); end = time.monotonic() + 90\n"
    f"while time.monotonic() < end and not os.path.exists('{RELEASE}'): time.sleep(0.1)"
)


def test_dpkg_lock_held_is_waited_for_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    scenario = Scenario(host, tmp_path)
    plan = scenario.plan(
        "apt",
        toml_plan(
            "faults-apt",
            [
                {
                    "name": "install_packages",
                    "description": "apt-get install (already installed: only the lock matters)",
                    "commands": ["DEBIAN_FRONTEND=noninteractive apt-get install -y -q coreutils"],
                }
            ],
        ),
    )

    def inject() -> None:
        host.run(f"rm -f {RELEASE}", check=True)
        host.path("/run/faults-holder.py").write_text(LOCK_HOLDER)
        host.run("setsid python3 /run/faults-holder.py >/dev/null 2>&1 </dev/null &", check=True)
        wait_until(host, "fuser /var/lib/dpkg/lock-frontend")

    def finish_upgrade() -> None:
        # the other process finishes its work a moment after our apt-get met its lock
        time.sleep(1.0)
        host.run(f"touch {RELEASE}")

    first, _ = _twice(
        scenario,
        plan,
        inject,
        on_error=finish_upgrade,
        step="install_packages",
        strategy="wait_for_apt_lock",
        error_class="apt_lock",
    )
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in first.output
    assert host.run("fuser /var/lib/dpkg/lock-frontend").returncode != 0


# -- a broken nginx config left by someone else ---------------------------------------------------

SITE = (
    "rm -f /etc/nginx/sites-enabled/default && "
    'printf "%s\\n" "server { listen 127.0.0.1:$HTTP_PORT; server_name faults.test; '
    "location / { return 200 'site-ok'; } }\" > /etc/nginx/sites-available/faults && "
    "ln -sfn ../sites-available/faults /etc/nginx/sites-enabled/faults"
)
# the last config that passed nginx -t, where restore_nginx_config looks for it
BACKUP = (
    "nginx -t && s=$(date +%Y%m%d%H%M%S%N) && mkdir -p /var/backups/aideploy/nginx/$s && "
    "cp -a /etc/nginx/. /var/backups/aideploy/nginx/$s/"
)
RELOAD = "if [ -s /run/nginx.pid ] && kill -0 $(cat /run/nginx.pid); then nginx -s reload; else nginx; fi"


def test_broken_nginx_config_is_restored_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    port = free_port()
    scenario = Scenario(host, tmp_path)
    plan = scenario.plan(
        "nginx",
        toml_plan(
            "faults-nginx",
            [
                {
                    "name": "configure_web",
                    "description": "site, nginx -t, backup of the good config, reload",
                    "commands": [SITE, BACKUP, RELOAD],
                    "verify": 'curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/" | grep -q site-ok',
                }
            ],
            {"HTTP_PORT": str(port)},
        ),
    )
    try:
        clean = scenario.deploy(plan)  # the last good config, backed up by the step
        assert clean.completed.returncode == 0, clean.explain()
        assert clean.step("configure_web")["attempts"] == 1

        def inject() -> None:
            host.run("echo 'this is not nginx syntax' > /etc/nginx/conf.d/legacy.conf", check=True)

        first, _ = _twice(
            scenario,
            plan,
            inject,
            step="configure_web",
            strategy="restore_nginx_config",
            error_class="nginx_config",
        )
        assert "/etc/nginx/conf.d/legacy.conf" in first.output
        assert not host.exists("/etc/nginx/conf.d/legacy.conf")
        # what was replaced is kept for a person to look at
        kept = host.run("ls /var/backups/aideploy/nginx-rejected/*/conf.d/legacy.conf")
        assert kept.returncode == 0 and len(kept.stdout.split()) == 2, kept.stderr
        assert host.run(f"curl -fsS -m 5 http://127.0.0.1:{port}/").stdout == "site-ok"
    finally:
        host.run("[ -s /run/nginx.pid ] && nginx -s quit")


# -- wrong ownership on the app directory ---------------------------------------------------------


def test_wrong_ownership_is_fixed_for_the_deploy_user_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    root = "/opt/faults-own"
    host.run(
        f"id faultdeploy >/dev/null 2>&1 || useradd -m -s /bin/sh faultdeploy; "
        f"mkdir -p {root}/releases && chown -R faultdeploy: {root}",
        check=True,
    )
    scenario = Scenario(host, tmp_path)
    plan = scenario.plan(
        "ownership",
        toml_plan(
            "faults-ownership",
            [
                {
                    "name": "upload_release",
                    "description": "the deploy user writes the new release",
                    "commands": [
                        'cd / && runuser -u "$DEPLOY_USER" -- mkdir -p '
                        '"$APP_ROOT/releases/$DEPLOYMENT_ID"',
                        'cd / && echo "$DEPLOYMENT_ID" | runuser -u "$DEPLOY_USER" -- '
                        'tee "$APP_ROOT/releases/$DEPLOYMENT_ID/VERSION" >/dev/null',
                    ],
                }
            ],
            {"APP_ROOT": root, "DEPLOY_USER": "faultdeploy"},
        ),
    )

    def inject() -> None:
        # someone ran a command as root in the app directory
        host.run(f"chown -R root:root {root}/releases && chmod 755 {root}/releases", check=True)

    first, second = _twice(
        scenario,
        plan,
        inject,
        step="upload_release",
        strategy="fix_ownership",
        error_class="permission_denied",
    )
    assert "Permission denied" in first.output
    owners = host.run(f"stat -c %U {root}/releases {root}/releases/*").stdout.split()
    assert owners and set(owners) == {"faultdeploy"}, owners
    for run in (first, second):
        assert host.exists(f"{root}/releases/{run.deployment_id}/VERSION")
    # nothing outside the app directory changed owner
    assert host.run("stat -c %U /opt").stdout.strip() == "root"


# -- a full disk: old releases filling the release filesystem -----------------------------------


def test_disk_full_of_old_releases_is_cleaned_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    root = "/opt/faults-disk"
    host.run(
        f"mkdir -p {root}/releases && mount -t tmpfs -o size=16m faults-releases {root}/releases",
        check=True,
    )
    scenario = Scenario(host, tmp_path)
    plan = scenario.plan(
        "disk",
        toml_plan(
            "faults-disk",
            [
                {
                    "name": "upload_release",
                    "description": "write the new release (4 MiB) and switch current to it",
                    "commands": [
                        'r="$APP_ROOT/releases/$DEPLOYMENT_ID"; rm -rf "$r" && mkdir -p "$r" && '
                        'head -c 4194304 /dev/urandom > "$r/payload.bin" && '
                        'ln -sfn "releases/$DEPLOYMENT_ID" "$APP_ROOT/current.new" && '
                        'mv -T "$APP_ROOT/current.new" "$APP_ROOT/current"'
                    ],
                }
            ],
            {"APP_ROOT": root, "KEEP_RELEASES": "3"},
        ),
    )

    def inject() -> None:
        # twelve old releases of 1.2 MiB each, oldest first, current on the newest of them
        host.run(
            f"rm -rf {root}/releases/* && for i in $(seq 12); do d={root}/releases/old-$i; "
            f'mkdir -p $d && head -c 1258291 /dev/zero > $d/payload.bin && touch -d "-$((60 - i)) '
            f'min" $d; done && ln -sfn releases/old-12 {root}/current',
            check=True,
        )

    try:
        first, second = _twice(
            scenario,
            plan,
            inject,
            step="upload_release",
            strategy="cleanup_disk",
            error_class="disk_full",
        )
        assert "No space left on device" in first.output
        left = host.run(f"ls {root}/releases").stdout.split()
        assert str(second.deployment_id) in left and "old-12" in left and "old-1" not in left
        assert (
            host.run(f"readlink {root}/current").stdout.strip().endswith(str(second.deployment_id))
        )
    finally:
        host.run(f"umount {root}/releases")


# -- a fault that cannot be recovered -------------------------------------------------------------


def test_unrecoverable_fault_fails_with_a_reason_and_the_previous_release_keeps_serving(
    throwaway: ThrowawayHost, tmp_path: Path, pg_port: str
) -> None:
    host = throwaway
    port = free_port()
    root = "/opt/faults-release"
    conf = host.run("ls /etc/postgresql/*/*/postgresql.conf").stdout.split()[0]
    scenario = Scenario(host, tmp_path, max_retries=1)
    web = (
        'mkdir -p "$WEB_DIR" && printf "%s\\n" "pid $WEB_DIR/nginx.pid;" "error_log stderr;" '
        '"events {}" "http { access_log off; server { listen 127.0.0.1:$HTTP_PORT; '
        'root $APP_ROOT/current; } }" > "$WEB_DIR/nginx.conf" && '
        '{ [ -s "$WEB_DIR/nginx.pid" ] && kill -0 "$(cat "$WEB_DIR/nginx.pid")" 2>/dev/null || '
        'nginx -c "$WEB_DIR/nginx.conf"; }'
    )
    plan = scenario.plan(
        "release",
        toml_plan(
            "faults-release",
            [
                {
                    "name": "stage_release",
                    "commands": [
                        'mkdir -p "$APP_ROOT/releases/$DEPLOYMENT_ID" && echo "$DEPLOYMENT_ID" '
                        '> "$APP_ROOT/releases/$DEPLOYMENT_ID/index.html"'
                    ],
                },
                {
                    "name": "migrate",
                    "commands": [
                        'cd / && runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -p "$DB_PORT" '
                        "-Atc 'SELECT 1'"
                    ],
                },
                {
                    "name": "switch_current",
                    "commands": [
                        'ln -sfn "releases/$DEPLOYMENT_ID" "$APP_ROOT/current.new" && '
                        'mv -T "$APP_ROOT/current.new" "$APP_ROOT/current"',
                        web,
                    ],
                },
            ],
            {"APP_ROOT": root, "DB_PORT": pg_port, "HTTP_PORT": str(port), "WEB_DIR": "/run/rel"},
        ),
    )
    try:
        host.run("service postgresql start", check=True)
        good = scenario.deploy(plan)
        assert good.completed.returncode == 0, good.explain()
        live = host.run(f"curl -fsS -m 5 http://127.0.0.1:{port}/").stdout.strip()
        assert live == good.deployment_id

        # PostgreSQL stopped, with a setting it refuses so that it cannot start again
        host.run(f"service postgresql stop; cp {conf} {conf}.good", check=True)
        host.run(f"echo \"shared_buffers = 'lots'\" >> {conf}", check=True)
        bad = scenario.deploy(plan)
        assert bad.completed.returncode == 4, bad.explain()
        assert bad.state["status"] == "failed", bad.explain()
        reason = bad.state["reason"]
        assert reason.startswith("step migrate failed (database_connection:"), reason
        assert "not recovered after 2 attempts" in reason and "start_service" in reason, reason
        assert "FAILED" in bad.completed.stderr and "migrate" in bad.completed.stderr
        assert bad.step("switch_current")["status"] == "pending", bad.explain()
        # every strategy tried was recorded as failed
        assert {o.outcome for o in scenario.outcomes(bad.deployment_id)} == {"failed"}
        # the previous release keeps serving
        assert host.run(f"readlink {root}/current").stdout.strip().endswith(str(good.deployment_id))
        live = host.run(f"curl -fsS -m 5 http://127.0.0.1:{port}/").stdout.strip()
        assert live == good.deployment_id
    finally:
        host.run(f"[ -f {conf}.good ] && mv {conf}.good {conf}; service postgresql stop")
        host.run('[ -s /run/rel/nginx.pid ] && kill "$(cat /run/rel/nginx.pid)"')
