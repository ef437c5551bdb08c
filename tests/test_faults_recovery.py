"""Real faults injected into a throwaway host, recovered by the right strategy, learned.

Each scenario deploys a small TOML plan that exercises the failing piece for real (nginx binding
a port, psql against PostgreSQL, apt-get under the real dpkg lock, nginx -t, a write as the deploy
user, a write on a full filesystem) with the aideploy CLI over SSH and its own knowledge base.
The fault is injected, the deploy recovers and completes, the knowledge base records the error
class and the strategy; then the same fault is injected again and the second deploy, with the
same knowledge base, recovers on the first attempt (one recovery, two step runs).

Some faults are ambiguous: a "Permission denied" on a hook owned by root looks like ownership but
is a missing execute bit, so the first encounter needs a second strategy and the second encounter
starts with the one that worked. The whole module records into one knowledge base (the file named
by ``AIDEPLOY_FAULTS_KB``, else a temporary one); the last test reads ``aideploy learn report``
over it: each fault's class, the strategies tried, and the first-try rate by encounter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    Run,
    Scenario,
    apply_strategy,
    assert_recovered,
    assert_recovered_first_try,
    dpkg_state,
    owned_by,
    toml_plan,
    wait_until,
)
from tests.support.throwaway import ThrowawayHost, available, free_port, throwaway

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

__all__ = ["throwaway"]  # the fixture


#: what the scenarios that ran taught the suite's knowledge base: error class -> strategies tried
LEARNED: dict[str, set[str]] = {}
#: error classes whose first encounter needed more than one strategy (first try rate must rise)
AMBIGUOUS: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def suite_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One knowledge base for the whole module (AIDEPLOY_FAULTS_KB, else a temporary file)."""
    shared = os.environ.get("AIDEPLOY_FAULTS_KB")
    path = Path(shared) if shared else tmp_path_factory.mktemp("faults-suite") / "kb.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIDEPLOY_FAULTS_KB", str(path))
        yield path


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
        # the knowledge base holds one attempt for this deployment: the strategy, recovered
        assert scenario.recorded(run) == [(error_class, strategy, "recovered")], run.explain()
        runs.append(run)
    LEARNED.setdefault(error_class, set()).add(strategy)
    _ranked_with_history(runs[1], strategy)
    return runs[0], runs[1]


def _ranked_with_history(run: Run, strategy: str) -> None:
    """``strategy`` was ranked with what an earlier deploy recorded (same or near signature)."""
    assert re.search(
        rf"recovery: {strategy} \(.*(?:same signature|sim \d+): [\d.]+ recovered / 0\.0 failed",
        run.completed.stdout,
    ), run.explain()


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
        # the web server of an earlier deploy stops first: wait until it has, not a fixed time
        host.run(
            f'p=$(cat {web}/nginx.pid 2>/dev/null); [ -n "$p" ] && kill "$p"; '
            f'i=0; while [ -n "$p" ] && kill -0 "$p" 2>/dev/null && [ $i -lt 1200 ]; '
            f"do sleep 0.05; i=$((i+1)); done"
        )
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
    owned_by(host, "faultdeploy", root, "releases")
    scenario = Scenario(host, tmp_path)
    plan = scenario.steps(
        "ownership",
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


# -- an ambiguous Permission denied: the owner looks wrong, the execute bit is what is missing ----

HOOK_RAN = "/opt/faults-mode/hook-ran"
HOOK = f"#!/bin/sh\nid -un > {HOOK_RAN}\n"


def test_hook_without_execute_bit_needs_the_second_strategy_then_it_comes_first(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    host = throwaway
    root = "/opt/faults-mode"
    owned_by(host, "faultmode", root, "bin")
    scenario = Scenario(host, tmp_path)
    plan = scenario.steps(
        "mode",
        [
            {
                "name": "run_hook",
                "description": "the deploy user runs the app's post-deploy hook",
                "commands": ['cd / && runuser -u "$DEPLOY_USER" -- "$APP_ROOT/bin/post_deploy"'],
            }
        ],
        {"APP_ROOT": root, "DEPLOY_USER": "faultmode"},
    )

    def inject() -> None:
        # the hook copied in by root, without its mode (as scp or a checkout with fileMode off do)
        host.path(f"{root}/bin/post_deploy").write_text(HOOK)
        host.run(f"chown root:root {root}/bin/post_deploy && chmod 0644 {root}/bin/post_deploy")
        host.run(f"rm -f {HOOK_RAN}")

    inject()
    first = scenario.deploy(plan)
    # cold start: the rules rank fix_ownership first; it changes the owner, the hook still cannot
    # run; make_executable, second, fixes it
    assert_recovered(first, "run_hook", ["fix_ownership", "make_executable"], "permission_denied")
    assert "failed to execute" in first.output and "Permission denied" in first.output
    assert scenario.recorded(first) == [
        ("permission_denied", "fix_ownership", "failed"),
        ("permission_denied", "make_executable", "recovered"),
    ], first.explain()
    assert host.read(HOOK_RAN) == "faultmode\n"

    inject()
    second = scenario.deploy(plan)
    # the same fault again: the strategy that worked comes first, one attempt
    assert_recovered_first_try(second, "run_hook", "make_executable", "permission_denied")
    assert scenario.recorded(second) == [("permission_denied", "make_executable", "recovered")]
    _ranked_with_history(second, "make_executable")
    LEARNED.setdefault("permission_denied", set()).update({"fix_ownership", "make_executable"})
    AMBIGUOUS.add("permission_denied")
    assert host.read(HOOK_RAN) == "faultmode\n"
    assert host.run(f"stat -c %a {root}/bin/post_deploy").stdout.strip() == "755"

    # make_executable again (idempotent), and where the problem is not a program lacking its
    # execute bit (a data file, a directory, a script outside APP_ROOT or in /etc): no change
    host.path(f"{root}/notes.txt").write_text("not a program\n")
    for outside in ("/usr/local/share/faults-hook", "/etc/faults-hook"):
        host.path(outside).write_text(HOOK)
    paths = [f"{root}/bin/post_deploy", f"{root}/notes.txt", f"{root}/bin"]
    modes = f"stat -c '%n %a %U' {' '.join(paths)} /usr/local/share/faults-hook /etc/faults-hook"
    before = host.run(modes, check=True).stdout
    for path in paths:
        assert not apply_strategy(
            host, "make_executable", "permission_denied", {"path": path}, {"APP_ROOT": root}
        ), path
    for outside, settings in (
        ("/usr/local/share/faults-hook", {"APP_ROOT": root}),
        ("/etc/faults-hook", {}),
    ):
        assert not apply_strategy(
            host, "make_executable", "permission_denied", {"path": outside}, settings
        ), outside
    assert host.run(modes, check=True).stdout == before


# -- the distro's Node.js packages in the way of the NodeSource nodejs package -------------------

NODE_DEBS = "/srv/faults-node"


@pytest.fixture(scope="module")
def nodesource_deb(throwaway: ThrowawayHost) -> str:
    """The NodeSource nodejs installed on this machine, repacked into a .deb inside the host."""
    host = throwaway
    version = host.run("dpkg-query -W -f='${Version}' nodejs").stdout
    assert "nodesource" in version, f"this machine's nodejs is not NodeSource's: {version!r}"
    host.run(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-repack",
        check=True,
        timeout=300,
    )
    # gzip -1 instead of xz: the same package, built in seconds
    host.run(
        f"mkdir -p {NODE_DEBS} && cd {NODE_DEBS} && dpkg-repack --deb-option=-Zgzip --deb-option=-z1 nodejs",
        check=True,
        timeout=300,
    )
    return host.run(f"ls {NODE_DEBS}/nodejs_*.deb", check=True).stdout.strip()


def test_distro_node_packages_in_the_way_of_nodesource_nodejs_are_removed_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path, nodesource_deb: str
) -> None:
    """Debian's nodejs with libnode-dev installed, then NodeSource's nodejs package with dpkg -i.

    On Debian 12 dpkg refuses it for a declared conflict ("libnode108:amd64 conflicts with
    nodejs-legacy", which NodeSource's package provides) before it compares files, so dpkg's
    "trying to overwrite '/usr/include/node/common.gypi', which is also in package libnode-dev"
    cannot be had from the real packages here (libnode-dev needs libnode108); that text is
    covered by the rules' and the data set's tests, and both are the same class and recovery.
    """
    host = throwaway
    scenario = Scenario(host, tmp_path)
    plan = scenario.steps(
        "nodejs",
        [
            {
                "name": "install_node",
                "description": "install the NodeSource nodejs package shipped with the app",
                "commands": ['DEBIAN_FRONTEND=noninteractive dpkg -i "$NODE_DEB"'],
                "verify": "dpkg-query -W -f='${Version}' nodejs | grep -q nodesource && node -v",
                "timeout": 600,
            }
        ],
        {"NODE_DEB": nodesource_deb},
    )

    injected = []

    def inject() -> None:
        # the distro's Node.js with its headers (libnode-dev, for native add-ons) installed first
        host.run(
            "dpkg -r --force-depends nodejs >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y -q --no-install-recommends nodejs libnode-dev",
            check=True,
            timeout=600,
        )
        state = host.run("dpkg-query -W -f='${Package} ${Status} ${Version}\\n' nodejs libnode-dev")
        assert "libnode-dev install ok installed" in state.stdout, state.stdout
        assert "nodesource" not in state.stdout, state.stdout
        injected.append(state.stdout)
        if len(injected) == 2:
            _removes_nothing_when_another_package_needs_node(host)

    first, _ = _twice(
        scenario,
        plan,
        inject,
        step="install_node",
        strategy="nodejs_remove_conflicting",
        error_class="nodejs_conflict",
    )
    # dpkg's own refusal, naming the distro package in the way
    assert "rule 'dpkg_conflicts_node'" in first.completed.stdout, first.explain()
    refused = scenario.step_output(first, "install_node")
    assert "libnode108:amd64 conflicts with nodejs-legacy" in refused, refused
    assert "conflicting packages - not installing nodejs" in refused, refused
    state = host.run("dpkg-query -W -f='${Package} ${Status} ${Version}\\n' nodejs libnode-dev")
    assert "nodejs install ok installed" in state.stdout and "nodesource" in state.stdout
    assert "libnode-dev install ok installed" not in state.stdout
    assert host.run("dpkg --audit").stdout.strip() == ""
    assert host.run("node -v").stdout.startswith("v")

    # applied again (no distro Node.js package left): nothing to do, nothing removed
    before = dpkg_state(host)
    assert not apply_strategy(host, "nodejs_remove_conflicting", "nodejs_conflict", {})
    assert dpkg_state(host) == before


TOOL_CONTROL = """\
Package: faults-node-tool
Version: 1.0
Architecture: all
Maintainer: aideploy tests <tests@aideploy.invalid>
Depends: nodejs
Description: a command line tool that runs on Node.js
"""


def _removes_nothing_when_another_package_needs_node(host: ThrowawayHost) -> None:
    """With a package that is not Node.js's own depending on the distro nodejs, removing the
    distro packages would take it too: nodejs_remove_conflicting refuses and changes nothing."""
    host.path(f"{NODE_DEBS}/tool/DEBIAN").mkdir(parents=True, exist_ok=True)
    host.path(f"{NODE_DEBS}/tool/DEBIAN/control").write_text(TOOL_CONTROL)
    host.run(
        f"dpkg-deb --build {NODE_DEBS}/tool {NODE_DEBS}/tool.deb && dpkg -i {NODE_DEBS}/tool.deb",
        check=True,
    )
    try:
        before = dpkg_state(host)
        assert "faults-node-tool install ok installed" in before
        assert not apply_strategy(host, "nodejs_remove_conflicting", "nodejs_conflict", {})
        assert dpkg_state(host) == before
    finally:
        host.run("dpkg -r faults-node-tool", check=True)


# -- a wheel built from source without the PostgreSQL client headers -----------------------------

SAMPLEAPP = Path(__file__).resolve().parent.parent / "examples" / "sampleapp"
APP_INSIDE = "/srv/faults-app"
GIT = "git -c user.name='aideploy tests' -c user.email=tests@aideploy.invalid"


def test_psycopg2_from_source_without_libpq_dev_gets_build_deps_then_first_try(
    throwaway: ThrowawayHost, tmp_path: Path
) -> None:
    """psycopg2 (no Linux wheels on PyPI: pip builds the sdist) without libpq-dev.

    pip's error here is the compiler's "libpq-fe.h: No such file or directory", not "pg_config
    executable not found": postgresql-client-15 (installed with the server the other faults use)
    ships a pg_config, so the build gets as far as the compiler. Both are the same class, fixed the
    same way.
    """
    host = throwaway
    root = "/opt/faults-wheel"
    # the sample app in a git repository inside the host, then a commit that asks for psycopg2
    shutil.copytree(
        SAMPLEAPP,
        host.path(APP_INSIDE),
        ignore=shutil.ignore_patterns("node_modules", "dist", "__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    requirements = host.path(f"{APP_INSIDE}/backend/requirements.txt")
    host.run(
        f"cd {APP_INSIDE} && git init -q -b main && git add -A && {GIT} commit -q -m 'sample app'",
        check=True,
    )
    requirements.write_text(requirements.read_text() + "psycopg2==2.9.10\n")
    host.run(f"cd {APP_INSIDE} && {GIT} commit -q -am 'backend: psycopg2'", check=True)
    scenario = Scenario(host, tmp_path)
    release = 'r="$APP_ROOT/releases/$DEPLOYMENT_ID"; '
    plan = scenario.steps(
        "wheel",
        [
            {
                "name": "fetch_release",
                "commands": [release + 'rm -rf "$r" && git clone -q "$APP_REPO" "$r"'],
            },
            {
                "name": "install_requirements",
                "description": "the release's virtualenv and requirements (as configure_backend)",
                "commands": [
                    release + '[ -x "$r/venv/bin/python" ] || python3 -m venv "$r/venv"',
                    release + '"$r/venv/bin/pip" install -q --disable-pip-version-check '
                    '--prefer-binary -r "$r/backend/requirements.txt"',
                ],
                "verify": release + '"$r/venv/bin/python" -c "import psycopg2, django"',
                "timeout": 900,
            },
        ],
        {"APP_ROOT": root, "APP_REPO": APP_INSIDE},
    )

    def inject() -> None:
        # no client headers; no wheel pip built before (it would be reused)
        host.run(
            "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q libpq-dev && "
            "rm -rf /root/.cache/pip/wheels",
            check=True,
            timeout=300,
        )
        assert not host.exists("/usr/include/postgresql/libpq-fe.h")

    first, second = _twice(
        scenario,
        plan,
        inject,
        step="install_requirements",
        strategy="install_build_deps",
        error_class="build_toolchain_missing",
    )
    failed = scenario.step_output(first, "install_requirements")
    assert "fatal error: libpq-fe.h: No such file or directory" in failed, failed
    assert host.exists("/usr/include/postgresql/libpq-fe.h")
    for run in (first, second):
        built = host.run(
            f"{root}/releases/{run.deployment_id}/venv/bin/python -c "
            "'import psycopg2; print(psycopg2.__version__)'"
        )
        assert built.stdout.startswith("2.9.10"), built.stderr

    # applied again with everything installed: nothing to do, no package changes
    before = dpkg_state(host)
    assert not apply_strategy(host, "install_build_deps", "build_toolchain_missing", {})
    assert dpkg_state(host) == before


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


# -- what the suite taught, as the report shows it ----------------------------------------------


def test_report_of_the_suite_shows_each_fault_and_the_first_try_rate_by_encounter(
    throwaway: ThrowawayHost, tmp_path: Path, suite_kb: Path
) -> None:
    """Runs after the scenarios above (in this module, in file order) and reads their KB."""
    assert LEARNED, "no fault scenario of this module ran before this test"
    scenario = Scenario(throwaway, tmp_path)
    assert scenario.kb == suite_kb and suite_kb.exists()
    report = scenario.report()
    rows = {r["error_class"]: r for r in report["first_try_by_encounter"]}
    print(json.dumps(report["first_try_by_encounter"], indent=1))
    for error_class, strategies in LEARNED.items():
        row = rows[error_class]
        assert strategies <= set(row["strategies_tried"].split(", ")), row
        # every fault met twice: its second encounter was recovered by the first strategy tried
        assert row["1st_failures"] >= 1 and row["2nd_failures"] >= 1, row
        assert row["2nd_rate"] == 1.0, row
        assert row["2nd_rate"] >= row["1st_rate"], row
    for error_class in AMBIGUOUS:
        assert rows[error_class]["1st_rate"] < rows[error_class]["2nd_rate"], rows[error_class]
