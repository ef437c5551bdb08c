"""How each built-in strategy is applied: ``APPLY``, keyed by the catalogue's names.

What each strategy is (risk, classes, needs, description) is the one catalogue,
:data:`aideploy.core.strategies.CATALOGUE`; this module holds only the code, real shell work on
the target, idempotent (applied twice = same state). Values detected in the error text (port,
service, path, command, package) reach the commands as quoted ``AIDEPLOY_*`` environment
variables, never pasted; the plan's variables are in their environment. Each strategy sees only
what its catalogue entry ``needs`` (:func:`~.base.only_needs`) and is never applied without all of
it, so no value here has a default: what a recovery acts on (a service, a port, a path, a
package) is what the error or the plan named. ``_r`` runs a command as root (directly when
already root, else through ``sudo -n``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from aideploy.core.errors import ManualInterventionRequired
from aideploy.core.strategies import CATALOGUE, CatalogueError
from aideploy.engine.recovery import StrategyContext
from aideploy.steps.strategies.base import (
    Apply,
    Commands,
    Recovery,
    commands,
    log,
    need,
    only_needs,
)

ROOT = '_r() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }; '
APT = "_r env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 -y -q"
LOCKS = "/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock"
# the installed distro Node.js packages, as $pk (nodejs only when it is not NodeSource's)
DISTRO_NODE = (
    "pk=$(dpkg-query -W -f='${Package} ${Status} ${Version}\\n' nodejs nodejs-doc npm 'libnode*' "
    '2>/dev/null | awk \'$4 == "installed" && !($1 == "nodejs" && $5 ~ /nodesource/) '
    "{print $1}' | tr '\\n' ' ')"
)


def cmd(text: str) -> str:
    return ROOT + text


def _c(*lines: str, guard: str | None = None, timeout: float | None = None) -> Commands:
    """Shell commands with the ``_r`` helper defined (see :func:`commands`)."""
    return commands(
        *(cmd(line) for line in lines), guard=cmd(guard) if guard else None, timeout=timeout
    )


def retry_with_backoff(ctx: StrategyContext) -> bool:
    """Transient errors: nothing to change; the executor waits its backoff, then runs the step
    again. (It does not sleep itself: that wait would come on top of the executor's.)"""
    return True


@dataclass(frozen=True)
class WaitForAptLock:
    """Wait (bounded) for the dpkg/apt lock holder, e.g. unattended-upgrades, then repair dpkg."""

    max_wait: float = 600.0
    poll: float = 5.0

    def __call__(self, ctx: StrategyContext) -> bool:
        waited = 0.0
        probe = cmd(f"! _r fuser {LOCKS} >/dev/null 2>&1")
        while not ctx.runner.run(probe).ok:
            if waited >= self.max_wait:
                return False
            ctx.clock.sleep(self.poll)
            waited += self.poll
        return ctx.runner.run(cmd("_r dpkg --configure -a")).ok


def free_port(ctx: StrategyContext) -> bool:
    """Stop the process listening on the port: without asking only if this deployment started it."""
    port = need(ctx, "port")
    if not port.isdigit():
        return False
    listing = ctx.runner.run(["ss", "-H", "-l", "-t", "-n", "-p", f"sport = :{port}"])
    pids = sorted({int(p) for p in re.findall(r"pid=(\d+)", listing.stdout)})
    if not pids:
        return listing.ok  # already free: the retry may pass
    foreign = [pid for pid in pids if pid not in ctx.owned_pids]
    if foreign and not ctx.settings.get("auto_approve"):
        names = ctx.runner.run(["ps", "-o", "pid=,comm=", "-p", ",".join(map(str, foreign))])
        question = f"stop {names.stdout.strip() or foreign} listening on port {port}?"
        if not ctx.approve(question):
            return False
    ids = " ".join(str(p) for p in pids)
    script = (
        f"_r kill -TERM {ids} 2>/dev/null; for i in $(seq 50); do "
        f"_r kill -0 {ids} 2>/dev/null || exit 0; sleep 0.1; done; _r kill -KILL {ids}"
    )
    ctx.runner.run(cmd(script))
    still = ctx.runner.run(["ss", "-H", "-l", "-t", "-n", f"sport = :{port}"])
    return still.ok and not still.stdout.strip()


def cleanup_disk(ctx: StrategyContext) -> bool:
    """Free space: old releases beyond the newest N, apt/pip/npm caches, journal; report it."""
    keep = int(need(ctx, "KEEP_RELEASES"))
    root = need(ctx, "APP_ROOT")
    # free space where the releases live (often not the root filesystem)
    where = shlex.quote(root.rstrip("/") + "/releases")
    free = f'd={where}; [ -d "$d" ] || d=/; df -Pk "$d" | awk \'NR==2 {{print $4}}\''
    before = ctx.runner.run(free).stdout.strip()
    parts = [
        "_r apt-get clean -q >/dev/null 2>&1 || true",
        "_r journalctl --vacuum-size=100M >/dev/null 2>&1 || true",
        "rm -rf ~/.cache/pip ~/.npm/_cacache 2>/dev/null || true",
    ]
    rel = shlex.quote(root.rstrip("/") + "/releases")
    parts.append(
        f"if [ -d {rel} ]; then cur=$(readlink -f {shlex.quote(root)}/current || true); "
        f"ls -1dt {rel}/*/ 2>/dev/null | tail -n +{keep + 1} | while read -r d; do "
        f'[ "$(readlink -f "$d")" = "$cur" ] || rm -rf -- "$d"; done; fi'
    )
    ctx.runner.run(cmd("; ".join(parts)))
    after = ctx.runner.run(free).stdout.strip()
    if before.isdigit() and after.isdigit():
        freed = (int(after) - int(before)) // 1024
        log.info("cleanup_disk freed %d MiB", freed)
        return int(after) > int(before)
    return True


def manual_intervention(ctx: StrategyContext) -> bool:
    """Pause: explain exactly what failed and what to do; the deployment stays resumable."""
    failure = ctx.failure
    raise ManualInterventionRequired(
        f"step {failure.step} needs a person: {failure.error_class} "
        f"({failure.result.tail(1) or 'see the log'}). Fix it on the host, then run "
        f"'aideploy resume <deployment id>'"
    )


#: how each catalogue strategy is applied, by name (a test keeps these names and the catalogue's
#: the same)
APPLY: dict[str, Apply] = {
    "retry_with_backoff": retry_with_backoff,
    "apt_update": _c(
        f"{APT} update",
        timeout=600,
    ),
    "wait_for_apt_lock": WaitForAptLock(),
    "dpkg_repair": _c(
        "_r dpkg --configure -a",
        f"{APT} -f install",
        timeout=900,
    ),
    "nodejs_remove_conflicting": _c(
        f'{DISTRO_NODE}; [ -n "$pk" ] || exit 1; '
        # what apt would take away with them (their dependents) must be Node.js packages too
        "other=$(apt-get -s remove $pk | awk '/^Remv / {sub(/:.*/, \"\", $2); print $2}' | grep -Ev "
        "'^(nodejs|nodejs-doc|npm|libnode[0-9a-z-]*|node-[a-z0-9.+-]+)$'); "
        'if [ -n "$other" ]; then echo "nodejs_remove_conflicting: removing" $pk "would also '
        'remove" $other", not removed" >&2; exit 1; fi; '
        f'{APT} remove $pk && echo "nodejs_remove_conflicting: removed" $pk',
        guard=f'{DISTRO_NODE}; [ -z "$pk" ]',  # no distro Node.js package installed
        timeout=600,
    ),
    "nodejs_clean_reinstall": _c(
        "_r dpkg --configure -a || true",
        f"{APT} remove --purge nodejs npm libnode-dev 'libnode[0-9]*' || true",
        f"{APT} -f install",
        f"{APT} autoremove",
        f"{APT} install nodejs",
        timeout=1800,
    ),
    "node_switch_version": _c(
        'major="$NODE_MAJOR"; node -v 2>/dev/null | grep -q "^v$major\\." || '
        '{ _r npm install -g n && _r n "$major"; }',
        timeout=1800,
    ),
    "npm_user_prefix": _c(
        'mkdir -p "$HOME/.npm-global" && npm config set prefix "$HOME/.npm-global"',
        guard='[ "$(npm config get prefix)" = "$HOME/.npm-global" ]',
    ),
    "fix_ownership": _c(
        'p="$AIDEPLOY_PATH"; [ -n "$p" ] || exit 1; '
        # a path that could not be created: its nearest existing parent is what lacks access
        'while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname "$p"); done; '
        'd="$p"; [ -d "$d" ] || d=$(dirname "$d"); d=$(readlink -f "$d"); '
        # an empty or root APP_ROOT bounds nothing: refused (the executor never gives one)
        'r=$(readlink -f "$APP_ROOT"); [ -n "$r" ] && [ "$r" != / ] || exit 1; '
        'case "$d/" in "$r"/*) ;; '
        '*) echo "fix_ownership: $d is outside APP_ROOT ($r), not changed" >&2; exit 1;; esac; '
        'u="$DEPLOY_USER"; [ -n "$u" ] || exit 1; '
        '_r chown -R "$u": "$d" && _r chmod -R u+rwX "$d" && echo "fix_ownership: $d -> $u"',
    ),
    "make_executable": _c(
        'p=$(readlink -f "$AIDEPLOY_PATH"); '
        'r=$(readlink -f "$APP_ROOT"); [ -n "$r" ] && [ "$r" != / ] || exit 1; '
        'case "$p" in "$r"/*) ;; '
        '*) echo "make_executable: $p is outside APP_ROOT ($r), not changed" >&2; exit 1;; esac; '
        # only a program: a script with a #! line or an ELF binary, never a data file
        "m=$(head -c 4 \"$p\" | od -An -c | tr -d ' '); case \"$m\" in '#!'*|'177ELF') ;; "
        '*) echo "make_executable: $p is not a script or a program, not changed" >&2; exit 1;; '
        'esac; _r chmod a+x "$p" && echo "make_executable: $p"',
        # not a regular file, or already executable by everyone: nothing to do
        guard='p="$AIDEPLOY_PATH"; [ ! -f "$p" ] || [ -n "$(find "$p" -maxdepth 0 -perm -111)" ]',
    ),
    "restart_service": _c(
        's="$AIDEPLOY_SERVICE"; '
        'if [ -d /run/systemd/system ]; then _r systemctl restart "$s"; '
        'else _r service "$s" restart; fi',
    ),
    "start_service": _c(
        's="$AIDEPLOY_SERVICE"; '
        'if [ -d /run/systemd/system ]; then _r systemctl start "$s"; '
        'else _r service "$s" start; fi',
    ),
    "free_port": free_port,
    "cleanup_disk": cleanup_disk,
    "limit_build_memory": _c(
        'f="$APP_ROOT/.build-env"; grep -q max-old-space-size "$f" 2>/dev/null || '
        'echo "export NODE_OPTIONS=--max-old-space-size=1024" >> "$f"',
    ),
    "add_swap": _c(
        "[ -f /swapfile ] || { _r fallocate -l 2G /swapfile && _r chmod 600 /swapfile && "
        "_r mkswap /swapfile; }",
        "_r swapon --show=NAME | grep -q /swapfile || _r swapon /swapfile",
    ),
    "dns_fallback_resolver": _c(
        "[ -f /etc/resolv.conf.aideploy.bak ] || _r cp -a /etc/resolv.conf "
        "/etc/resolv.conf.aideploy.bak",
        "grep -q '^nameserver 1.1.1.1' /etc/resolv.conf || "
        "printf 'nameserver 1.1.1.1\\nnameserver 8.8.8.8\\n' | _r tee -a /etc/resolv.conf "
        ">/dev/null",
    ),
    "certbot_retry": _c(
        'd="$DOMAIN"; '
        '_r certbot --nginx -n --agree-tos --register-unsafely-without-email -d "$d" || '
        "{ _r mkdir -p /etc/ssl/aideploy && _r openssl req -x509 -nodes -newkey rsa:2048 "
        '-days 365 -subj "/CN=$d" -keyout /etc/ssl/aideploy/"$d".key '
        '-out /etc/ssl/aideploy/"$d".crt; }',
        timeout=600,
    ),
    "install_build_deps": _c(
        f"{APT} install build-essential python3-dev libpq-dev pkg-config",
        timeout=1800,
        # every one of them installed: nothing to do
        guard="for p in build-essential python3-dev libpq-dev pkg-config; do "
        "[ \"$(dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null)\" = 'install ok installed' ] "
        "|| exit 1; done",
    ),
    "install_python_venv": _c(
        f"{APT} install python3-venv python3-pip",
        timeout=1200,
        guard="python3 -m venv --help >/dev/null 2>&1 && python3 -m ensurepip --version",
    ),
    "install_missing_command": _c(
        'c="$AIDEPLOY_COMMAND"; command -v "$c" >/dev/null && exit 0; '
        'case "$c" in node|npm|npx) p=nodejs;; pg_config) p=libpq-dev;; psql|pg_dump) '
        'p=postgresql-client;; pip|pip3) p=python3-pip;; *) p="$c";; esac; '
        f'{APT} install "$p"',
        timeout=1200,
    ),
    "restore_nginx_config": _c(
        # backups: /var/backups/aideploy/nginx/<sortable stamp>/ = a copy of /etc/nginx that
        # passed nginx -t; the newest by name is restored exactly (files added since go too)
        'b=/var/backups/aideploy/nginx; [ -d "$b" ] || exit 1; '
        "last=$(ls -1 \"$b\" | grep -E '^[0-9][0-9T._-]*$' | sort | tail -n1); "
        '[ -n "$last" ] && [ -f "$b/$last/nginx.conf" ] || exit 1; '
        "k=/var/backups/aideploy/nginx-rejected/$(date +%Y%m%d%H%M%S)-$$; "
        '_r mkdir -p "$k" && _r cp -a /etc/nginx/. "$k/" || exit 1; '
        '_r find /etc/nginx -mindepth 1 -delete && _r cp -a "$b/$last/." /etc/nginx/ && '
        '_r nginx -t && echo "restore_nginx_config: $b/$last restored, rejected config in $k" && '
        "{ _r nginx -s reload 2>/dev/null || true; }",
        guard="nginx -t >/dev/null 2>&1",  # the config passes: nothing to restore
    ),
    "django_migrate": _c(
        'cd "$BACKEND_DIR" && "$VENV_DIR/bin/python" manage.py migrate --noinput',
    ),
    "django_fix_settings": _c(
        'f="$ENV_FILE"; [ -f "$f" ] || exit 1; '
        'grep -q "^ALLOWED_HOSTS=" "$f" || echo "ALLOWED_HOSTS=$DOMAIN" '
        '>> "$f"; grep -q "^STATIC_ROOT=" "$f" || echo "STATIC_ROOT=$APP_ROOT/static" >> "$f"',
    ),
    "database_create_role": _c(
        'r="$DB_USER"; db="$DB_NAME"; '
        "_r runuser -u postgres -- psql -v ON_ERROR_STOP=1 -tAc "
        "\"SELECT 1 FROM pg_roles WHERE rolname='$r'\" | grep -q 1 || "
        '_r runuser -u postgres -- createuser "$r"; '
        "_r runuser -u postgres -- psql -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\" "
        '| grep -q 1 || _r runuser -u postgres -- createdb -O "$r" "$db"',
    ),
    "manual_intervention": manual_intervention,
}


def _builtin() -> tuple[Recovery, ...]:
    missing = [name for name in CATALOGUE if name not in APPLY]
    extra = [name for name in APPLY if name not in CATALOGUE]
    if missing or extra:
        raise CatalogueError(
            "the strategy catalogue and its apply code disagree: "
            f"no code for {missing or 'none'}, code for unknown {extra or 'none'}"
        )
    return tuple(Recovery(spec, only_needs(spec, APPLY[name])) for name, spec in CATALOGUE.items())


#: every built-in strategy, in the catalogue's order
BUILTIN: tuple[Recovery, ...] = _builtin()
