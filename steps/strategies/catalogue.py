"""The built-in recovery strategies (DESIGN.md's minimum catalogue).

Each is real shell work on the target, idempotent (applied twice = same state), with a risk level
and the error classes it serves. Values detected in the error text (port, service, path, command,
package) reach the commands as quoted ``AIDEPLOY_*`` environment variables, never pasted. ``_r``
runs a command as root (directly when already root, else through ``sudo -n``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from aideploy.core.errors import ManualInterventionRequired
from aideploy.core.recovery import Risk
from aideploy.engine.recovery import StrategyContext
from aideploy.steps.strategies.base import BaseStrategy, CommandStrategy, log

_PLAN_VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")

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


@dataclass(frozen=True)
class RetryWithBackoff(BaseStrategy):
    """Transient errors: wait (exponential backoff with jitter), then let the step run again."""

    def apply(self, ctx: StrategyContext) -> bool:
        attempt = int(str(ctx.settings.get("attempt", 1)))
        ctx.clock.sleep(min(30.0, 2.0 ** min(attempt, 5)))
        return True


@dataclass(frozen=True)
class WaitForAptLock(BaseStrategy):
    """Wait (bounded) for the dpkg/apt lock holder, e.g. unattended-upgrades, then repair dpkg."""

    max_wait: float = 600.0
    poll: float = 5.0

    def apply(self, ctx: StrategyContext) -> bool:
        waited = 0.0
        probe = cmd(f"! _r fuser {LOCKS} >/dev/null 2>&1")
        while not ctx.runner.run(probe).ok:
            if waited >= self.max_wait:
                return False
            ctx.clock.sleep(self.poll)
            waited += self.poll
        return ctx.runner.run(cmd("_r dpkg --configure -a")).ok


@dataclass(frozen=True)
class FreePort(BaseStrategy):
    """Stop the process listening on the port: without asking only if this deployment started it."""

    def apply(self, ctx: StrategyContext) -> bool:
        port = self.detail(ctx, "port")
        if not port or not port.isdigit():
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


@dataclass(frozen=True)
class CleanupDisk(BaseStrategy):
    """Free space: old releases beyond the newest N, apt/pip/npm caches, journal; report it."""

    def apply(self, ctx: StrategyContext) -> bool:
        keep = int(str(ctx.settings.get("KEEP_RELEASES") or ctx.settings.get("keep_releases", 3)))
        root = str(ctx.settings.get("APP_ROOT", ctx.settings.get("AIDEPLOY_ROOT", "")))
        # free space where the releases live (often not the root filesystem)
        where = shlex.quote(root.rstrip("/") + "/releases") if root else "/"
        free = f'd={where}; [ -d "$d" ] || d=/; df -Pk "$d" | awk \'NR==2 {{print $4}}\''
        before = ctx.runner.run(free).stdout.strip()
        parts = [
            "_r apt-get clean -q >/dev/null 2>&1 || true",
            "_r journalctl --vacuum-size=100M >/dev/null 2>&1 || true",
            "rm -rf ~/.cache/pip ~/.npm/_cacache 2>/dev/null || true",
        ]
        if root:
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


@dataclass(frozen=True)
class ManualIntervention(BaseStrategy):
    """Pause: explain exactly what failed and what to do; the deployment stays resumable."""

    def apply(self, ctx: StrategyContext) -> bool:
        failure = ctx.failure
        raise ManualInterventionRequired(
            f"step {failure.step} needs a person: {failure.error_class} "
            f"({failure.result.tail(1) or 'see the log'}). Fix it on the host, then run "
            f"'aideploy resume <deployment id>'"
        )


def plan_env(ctx: StrategyContext) -> dict[str, str]:
    """The plan's variables (APP_ROOT, DEPLOY_USER, DB_USER...) for a strategy's commands."""
    return {
        key: value
        for key, value in ctx.settings.items()
        if isinstance(value, str) and _PLAN_VARIABLE.match(key) and not key.startswith("AIDEPLOY_")
    }


@dataclass(frozen=True)
class PlanCommandStrategy(CommandStrategy):
    """A CommandStrategy whose commands see the plan's variables as environment variables
    (as the plan's own steps do); details from the error text still come as ``AIDEPLOY_*``."""

    def apply(self, ctx: StrategyContext) -> bool:
        env = plan_env(ctx)
        env_prefix = " ".join(
            f"AIDEPLOY_{key.upper()}={shlex.quote(str(value))}"
            for key, value in sorted(ctx.failure.details.items())
            if key.isidentifier()
        )
        prefix = f"export {env_prefix}; " if env_prefix else ""
        if self.guard is not None and ctx.runner.run(prefix + self.guard, env=env).ok:
            log.info("%s: nothing to do", self.name)
            return False
        for command in self.commands:
            result = ctx.runner.run(prefix + command, timeout=self.timeout, env=env)
            log.info("recovery: %s -> exit %s", command, result.exit_code)
            if not result.ok:
                return False
        return True


def _c(
    name: str,
    risk: Risk,
    description: str,
    classes: tuple[str, ...],
    *commands: str,
    guard: str | None = None,
    timeout: float | None = None,
) -> CommandStrategy:
    return PlanCommandStrategy(
        name,
        risk,
        description,
        classes,
        tuple(cmd(c) for c in commands),
        guard=cmd(guard) if guard else None,
        timeout=timeout,
    )


BUILTIN: tuple[BaseStrategy, ...] = (
    RetryWithBackoff(
        "retry_with_backoff",
        Risk.LOW,
        "Wait with exponential backoff and run the step again.",
        ("network_timeout", "dns_failure", "connection_refused", "unknown"),
    ),
    _c(
        "apt_update",
        Risk.LOW,
        "Refresh the apt package lists.",
        ("package_not_found",),
        f"{APT} update",
        timeout=600,
    ),
    WaitForAptLock(
        "wait_for_apt_lock",
        Risk.LOW,
        "Wait for the apt/dpkg lock holder to finish, then finish dpkg's work.",
        ("apt_lock",),
    ),
    _c(
        "dpkg_repair",
        Risk.HIGH,  # apt-get -f install may remove packages
        "Finish interrupted dpkg work and fix broken dependencies.",
        ("apt_lock", "nodejs_conflict"),
        "_r dpkg --configure -a",
        f"{APT} -f install",
        timeout=900,
    ),
    _c(
        "nodejs_remove_conflicting",
        Risk.MEDIUM,
        "Remove the distro's Node.js packages (nodejs, libnode*, npm) in the way of another "
        "nodejs; refuses when anything else would go with them.",
        ("nodejs_conflict",),
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
    _c(
        "nodejs_clean_reinstall",
        Risk.HIGH,
        "Purge distro nodejs/npm/libnode-dev packages, repair dpkg, reinstall nodejs.",
        ("nodejs_conflict",),
        "_r dpkg --configure -a || true",
        f"{APT} remove --purge nodejs npm libnode-dev 'libnode[0-9]*' || true",
        f"{APT} -f install",
        f"{APT} autoremove",
        f"{APT} install nodejs",
        timeout=1800,
    ),
    _c(
        "node_switch_version",
        Risk.MEDIUM,
        "Install the Node major the app asks for (NODE_MAJOR) through n/npm and put it first.",
        ("node_version",),
        'major="${NODE_MAJOR:-20}"; node -v 2>/dev/null | grep -q "^v$major\\." || '
        '{ _r npm install -g n && _r n "$major"; }',
        timeout=1800,
    ),
    _c(
        "npm_user_prefix",
        Risk.LOW,
        "Point npm's global prefix at ~/.npm-global so -g installs need no root.",
        ("npm_permissions",),
        'mkdir -p "$HOME/.npm-global" && npm config set prefix "$HOME/.npm-global"',
        guard='[ "$(npm config get prefix)" = "$HOME/.npm-global" ]',
    ),
    _c(
        "fix_ownership",
        Risk.MEDIUM,
        "Give the deploy user ownership and write access to the path named in the error.",
        ("permission_denied",),
        'p="${AIDEPLOY_PATH:-${APP_ROOT:-}}"; [ -n "$p" ] || exit 1; '
        # a path that could not be created: its nearest existing parent is what lacks access
        'while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname "$p"); done; '
        'd="$p"; [ -d "$d" ] || d=$(dirname "$d"); d=$(readlink -f "$d"); '
        'if [ -n "${APP_ROOT:-}" ]; then r=$(readlink -f "$APP_ROOT"); case "$d/" in "$r"/*) ;; '
        '*) echo "fix_ownership: $d is outside APP_ROOT ($r), not changed" >&2; exit 1;; esac; '
        'else case "$d" in /|/bin|/bin/*|/boot*|/dev*|/etc|/etc/*|/home|/lib*|/opt|/proc*|/root'
        "|/run|/sbin*|/srv|/sys*|/tmp|/usr|/usr/*|/var|/var/lib|/var/lib/dpkg*|/var/lib/apt*) "
        'echo "fix_ownership: refusing to change system path $d" >&2; exit 1;; esac; fi; '
        'u="${DEPLOY_USER:-$(id -un)}"; '
        '_r chown -R "$u": "$d" && _r chmod -R u+rwX "$d" && echo "fix_ownership: $d -> $u"',
    ),
    _c(
        "make_executable",
        Risk.LOW,
        "Give a script or program the error names as not executable its execute bits.",
        ("permission_denied",),
        'p=$(readlink -f "$AIDEPLOY_PATH"); '
        'if [ -n "${APP_ROOT:-}" ]; then r=$(readlink -f "$APP_ROOT"); case "$p" in "$r"/*) ;; '
        '*) echo "make_executable: $p is outside APP_ROOT ($r), not changed" >&2; exit 1;; esac; '
        'else case "$p" in /bin/*|/boot/*|/etc/*|/lib*|/proc/*|/sbin/*|/sys/*|/usr/*|/var/lib/*) '
        'echo "make_executable: refusing to change system file $p" >&2; exit 1;; esac; fi; '
        # only a program: a script with a #! line or an ELF binary, never a data file
        "m=$(head -c 4 \"$p\" | od -An -c | tr -d ' '); case \"$m\" in '#!'*|'177ELF') ;; "
        '*) echo "make_executable: $p is not a script or a program, not changed" >&2; exit 1;; '
        'esac; _r chmod a+x "$p" && echo "make_executable: $p"',
        # no path, not a regular file, or already executable by everyone: nothing to do
        guard='p="${AIDEPLOY_PATH:-}"; [ -z "$p" ] || [ ! -f "$p" ] || '
        '[ -n "$(find "$p" -maxdepth 0 -perm -111)" ]',
    ),
    _c(
        "restart_service",
        Risk.MEDIUM,
        "Restart the failed service (systemd or service(8)).",
        ("service_failed", "connection_refused", "database_connection"),
        's="${AIDEPLOY_SERVICE:-}"; [ -n "$s" ] || exit 1; '
        'if [ -d /run/systemd/system ]; then _r systemctl restart "$s"; '
        'else _r service "$s" restart; fi',
    ),
    _c(
        "start_service",
        Risk.LOW,
        "Start a dependency service that is not running.",
        ("connection_refused", "database_connection"),
        's="${AIDEPLOY_SERVICE:-postgresql}"; '
        'if [ -d /run/systemd/system ]; then _r systemctl start "$s"; '
        'else _r service "$s" start; fi',
    ),
    FreePort(
        "free_port",
        Risk.HIGH,
        "Stop the process holding the port (ours without asking; foreign only if approved).",
        ("port_in_use",),
    ),
    CleanupDisk(
        "cleanup_disk",
        Risk.MEDIUM,
        "Remove old releases and apt/pip/npm caches, vacuum the journal.",
        ("disk_full",),
    ),
    _c(
        "limit_build_memory",
        Risk.LOW,
        "Cap Node's heap for builds (NODE_OPTIONS=--max-old-space-size) in the app env.",
        ("out_of_memory",),
        'f="${APP_ROOT:-$HOME}/.build-env"; grep -q max-old-space-size "$f" 2>/dev/null || '
        'echo "export NODE_OPTIONS=--max-old-space-size=1024" >> "$f"',
    ),
    _c(
        "add_swap",
        Risk.HIGH,
        "Create and enable a 2 GiB swap file (/swapfile).",
        ("out_of_memory",),
        "[ -f /swapfile ] || { _r fallocate -l 2G /swapfile && _r chmod 600 /swapfile && "
        "_r mkswap /swapfile; }",
        "_r swapon --show=NAME | grep -q /swapfile || _r swapon /swapfile",
    ),
    _c(
        "dns_fallback_resolver",
        Risk.HIGH,
        "Back up /etc/resolv.conf, then add public fallback name servers.",
        ("dns_failure",),
        "[ -f /etc/resolv.conf.aideploy.bak ] || _r cp -a /etc/resolv.conf "
        "/etc/resolv.conf.aideploy.bak",
        "grep -q '^nameserver 1.1.1.1' /etc/resolv.conf || "
        "printf 'nameserver 1.1.1.1\\nnameserver 8.8.8.8\\n' | _r tee -a /etc/resolv.conf "
        ">/dev/null",
    ),
    _c(
        "certbot_retry",
        Risk.LOW,
        "Retry certbot for the domain; on failure fall back to a self-signed certificate.",
        ("ssl_certificate",),
        'd="${DOMAIN:-}"; [ -n "$d" ] || exit 1; '
        '_r certbot --nginx -n --agree-tos --register-unsafely-without-email -d "$d" || '
        "{ _r mkdir -p /etc/ssl/aideploy && _r openssl req -x509 -nodes -newkey rsa:2048 "
        '-days 365 -subj "/CN=$d" -keyout /etc/ssl/aideploy/"$d".key '
        '-out /etc/ssl/aideploy/"$d".crt; }',
        timeout=600,
    ),
    _c(
        "install_build_deps",
        Risk.LOW,
        "Install compilers and headers wheels need (build-essential, python3-dev, libpq-dev).",
        ("build_toolchain_missing",),
        f"{APT} install build-essential python3-dev libpq-dev pkg-config",
        timeout=1800,
        # every one of them installed: nothing to do
        guard="for p in build-essential python3-dev libpq-dev pkg-config; do "
        "[ \"$(dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null)\" = 'install ok installed' ] "
        "|| exit 1; done",
    ),
    _c(
        "install_python_venv",
        Risk.LOW,
        "Install python3-venv/pip so a virtualenv can be made.",
        ("python_env",),
        f"{APT} install python3-venv python3-pip",
        timeout=1200,
        guard="python3 -m venv --help >/dev/null 2>&1 && python3 -m ensurepip --version",
    ),
    _c(
        "install_missing_command",
        Risk.LOW,
        "Install the package that provides the missing command.",
        ("command_not_found",),
        'c="${AIDEPLOY_COMMAND:-}"; [ -n "$c" ] || exit 1; command -v "$c" >/dev/null && exit 0; '
        'case "$c" in node|npm|npx) p=nodejs;; pg_config) p=libpq-dev;; psql|pg_dump) '
        'p=postgresql-client;; pip|pip3) p=python3-pip;; *) p="$c";; esac; '
        f'{APT} install "$p"',
        timeout=1200,
    ),
    _c(
        "restore_nginx_config",
        Risk.MEDIUM,
        "Put back the last nginx site config that passed nginx -t, then reload nginx.",
        ("nginx_config",),
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
    _c(
        "django_migrate",
        Risk.LOW,
        "Apply the Django migrations of the current release.",
        ("django_migration",),
        'cd "${BACKEND_DIR:?}" && "${VENV_DIR:?}/bin/python" manage.py migrate --noinput',
    ),
    _c(
        "django_fix_settings",
        Risk.LOW,
        "Re-write ALLOWED_HOSTS/CSRF/STATIC_ROOT/SECRET_KEY defaults in the app's env file.",
        ("django_settings",),
        'f="${ENV_FILE:?}"; [ -f "$f" ] || exit 1; '
        'grep -q "^ALLOWED_HOSTS=" "$f" || echo "ALLOWED_HOSTS=${DOMAIN:-localhost},localhost" '
        '>> "$f"; grep -q "^STATIC_ROOT=" "$f" || echo "STATIC_ROOT=${APP_ROOT:?}/static" >> "$f"',
    ),
    _c(
        "database_create_role",
        Risk.MEDIUM,
        "Create the app's PostgreSQL role and database when they do not exist.",
        ("database_connection",),
        'r="${DB_USER:?}"; db="${DB_NAME:?}"; '
        "_r runuser -u postgres -- psql -v ON_ERROR_STOP=1 -tAc "
        "\"SELECT 1 FROM pg_roles WHERE rolname='$r'\" | grep -q 1 || "
        '_r runuser -u postgres -- createuser "$r"; '
        "_r runuser -u postgres -- psql -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\" "
        '| grep -q 1 || _r runuser -u postgres -- createdb -O "$r" "$db"',
    ),
    ManualIntervention(
        "manual_intervention",
        Risk.LOW,
        "Pause with an explanation; resume after fixing by hand.",
        ("unknown",),
    ),
)
