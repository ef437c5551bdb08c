"""The error classes and the recovery-strategy catalogue (the contracts of DESIGN.md).

Names here are part of the public contract of ``aideploy learn classify`` and of the knowledge
base: the ranker, the rules, the dataset and the strategies all use exactly these strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from aideploy.core.recovery import Risk

ERROR_CLASSES: tuple[str, ...] = (
    "nodejs_conflict",
    "package_not_found",
    "permission_denied",
    "database_connection",
    "port_in_use",
    "connection_refused",
    "disk_full",
    "dns_failure",
    "ssl_certificate",
    "npm_permissions",
    "apt_lock",
    "out_of_memory",
    "ssh_auth",
    "build_toolchain_missing",
    "python_env",
    "node_version",
    "service_failed",
    "nginx_config",
    "django_migration",
    "django_settings",
    "git_auth",
    "network_timeout",
    "command_not_found",
    "unknown",
)

UNKNOWN = "unknown"


@dataclass(frozen=True)
class StrategyInfo:
    """Catalogue entry of a recovery strategy: what the ranker knows without running it."""

    name: str
    risk: Risk
    description: str
    classes: tuple[str, ...]


_L, _M, _H = Risk.LOW, Risk.MEDIUM, Risk.HIGH

CATALOGUE: dict[str, StrategyInfo] = {
    s.name: s
    for s in (
        StrategyInfo(
            "retry_with_backoff",
            _L,
            "Run the step again after an exponential backoff (transient failures).",
            ("network_timeout", "connection_refused", "dns_failure", "unknown"),
        ),
        StrategyInfo(
            "apt_update",
            _L,
            "Refresh the apt package index, then retry.",
            ("package_not_found",),
        ),
        StrategyInfo(
            "wait_for_apt_lock",
            _L,
            "Wait until the dpkg/apt lock is released (unattended-upgrades), then retry.",
            ("apt_lock",),
        ),
        StrategyInfo(
            "dpkg_repair",
            _H,
            "dpkg --configure -a and apt-get -f install to finish an interrupted install.",
            ("apt_lock", "nodejs_conflict"),
        ),
        StrategyInfo(
            "nodejs_remove_conflicting",
            _M,
            "Remove the distro's nodejs/libnode*/npm packages in the way of another nodejs.",
            ("nodejs_conflict",),
        ),
        StrategyInfo(
            "nodejs_clean_reinstall",
            _H,
            "Purge distro nodejs/libnode-dev/npm and reinstall Node.js from NodeSource.",
            ("nodejs_conflict", "node_version"),
        ),
        StrategyInfo(
            "node_switch_version",
            _M,
            "Install the Node.js major version the project's engines field asks for.",
            ("node_version",),
        ),
        StrategyInfo(
            "npm_user_prefix",
            _L,
            "Point npm's global prefix at a directory the deploy user owns.",
            ("npm_permissions", "permission_denied"),
        ),
        StrategyInfo(
            "fix_ownership",
            _M,
            "chown/chmod the application paths (or a private key) to the right owner and mode.",
            ("permission_denied", "npm_permissions", "ssh_auth"),
        ),
        StrategyInfo(
            "make_executable",
            _L,
            "Add the execute bits to a script or program the error names (not its owner).",
            ("permission_denied",),
        ),
        StrategyInfo(
            "restart_service",
            _M,
            "Restart the systemd service involved and wait until it is active.",
            ("service_failed", "connection_refused", "database_connection"),
        ),
        StrategyInfo(
            "start_service",
            _L,
            "Start (and enable) a stopped dependency service.",
            ("connection_refused", "database_connection", "service_failed"),
        ),
        StrategyInfo(
            "free_port",
            _H,
            "Stop the process holding the port (asks unless this deployment started it).",
            ("port_in_use",),
        ),
        StrategyInfo(
            "cleanup_disk",
            _M,
            "Clean apt caches, old journals, old releases and temp files.",
            ("disk_full",),
        ),
        StrategyInfo(
            "limit_build_memory",
            _L,
            "Rebuild with a lower memory ceiling (NODE_OPTIONS, fewer parallel jobs).",
            ("out_of_memory",),
        ),
        StrategyInfo(
            "add_swap",
            _H,
            "Create and enable a swap file.",
            ("out_of_memory",),
        ),
        StrategyInfo(
            "dns_fallback_resolver",
            _H,
            "Add a fallback DNS resolver to the system resolver configuration.",
            ("dns_failure",),
        ),
        StrategyInfo(
            "certbot_retry",
            _L,
            "Retry certbot after checking DNS/port 80; fall back to a self-signed certificate.",
            ("ssl_certificate",),
        ),
        StrategyInfo(
            "install_build_deps",
            _L,
            "Install compilers and headers (build-essential, python3-dev, libpq-dev).",
            ("build_toolchain_missing",),
        ),
        StrategyInfo(
            "install_python_venv",
            _L,
            "Install python3-venv/pip and (re)create the application virtualenv.",
            ("python_env",),
        ),
        StrategyInfo(
            "install_missing_command",
            _L,
            "Install the package that provides the missing command.",
            ("command_not_found",),
        ),
        StrategyInfo(
            "restore_nginx_config",
            _M,
            "Restore the last nginx configuration that passed nginx -t and reload.",
            ("nginx_config",),
        ),
        StrategyInfo(
            "django_migrate",
            _L,
            "Run manage.py migrate (with --fake-initial when tables already exist).",
            ("django_migration",),
        ),
        StrategyInfo(
            "django_fix_settings",
            _L,
            "Write the missing Django settings (ALLOWED_HOSTS, SECRET_KEY, STATIC_ROOT, CSRF).",
            ("django_settings", "database_connection"),
        ),
        StrategyInfo(
            "database_create_role",
            _M,
            "Create the application's PostgreSQL role and database, and set its password.",
            ("database_connection",),
        ),
        StrategyInfo(
            "manual_intervention",
            _L,
            "Pause the deployment, explain what is needed, keep state for resume.",
            ERROR_CLASSES,
        ),
    )
}

STRATEGIES: tuple[str, ...] = tuple(CATALOGUE)

#: ordered default strategies per class (cold start when nothing else is known)
CLASS_STRATEGIES: dict[str, tuple[str, ...]] = {
    "nodejs_conflict": (
        "nodejs_remove_conflicting",
        "nodejs_clean_reinstall",
        "dpkg_repair",
        "manual_intervention",
    ),
    "package_not_found": ("apt_update", "retry_with_backoff", "manual_intervention"),
    "permission_denied": (
        "fix_ownership",
        "make_executable",
        "npm_user_prefix",
        "manual_intervention",
    ),
    "database_connection": (
        "start_service",
        "database_create_role",
        "restart_service",
        "manual_intervention",
    ),
    "port_in_use": ("free_port", "restart_service", "manual_intervention"),
    "connection_refused": (
        "start_service",
        "restart_service",
        "retry_with_backoff",
        "manual_intervention",
    ),
    "disk_full": ("cleanup_disk", "manual_intervention"),
    "dns_failure": ("retry_with_backoff", "dns_fallback_resolver", "manual_intervention"),
    "ssl_certificate": ("certbot_retry", "retry_with_backoff", "manual_intervention"),
    "npm_permissions": ("npm_user_prefix", "fix_ownership", "manual_intervention"),
    "apt_lock": ("wait_for_apt_lock", "dpkg_repair", "manual_intervention"),
    "out_of_memory": ("limit_build_memory", "add_swap", "manual_intervention"),
    "ssh_auth": ("manual_intervention", "fix_ownership"),
    "build_toolchain_missing": ("install_build_deps", "manual_intervention"),
    "python_env": ("install_python_venv", "manual_intervention"),
    "node_version": ("node_switch_version", "nodejs_clean_reinstall", "manual_intervention"),
    "service_failed": ("restart_service", "start_service", "manual_intervention"),
    "nginx_config": ("restore_nginx_config", "manual_intervention"),
    "django_migration": ("django_migrate", "manual_intervention"),
    "django_settings": ("django_fix_settings", "manual_intervention"),
    "git_auth": ("manual_intervention", "retry_with_backoff"),
    "network_timeout": ("retry_with_backoff", "manual_intervention"),
    "command_not_found": ("install_missing_command", "install_python_venv", "manual_intervention"),
    "unknown": ("retry_with_backoff", "manual_intervention"),
}


def risk_of(strategy: str) -> Risk:
    """Risk level of a strategy; unknown (custom) strategies count as high risk."""
    info = CATALOGUE.get(strategy)
    return info.risk if info else Risk.HIGH


def strategies_for(error_class: str) -> tuple[str, ...]:
    return CLASS_STRATEGIES.get(error_class, CLASS_STRATEGIES[UNKNOWN])


def related_strategies(error_class: str) -> tuple[str, ...]:
    """Every catalogue strategy that lists ``error_class`` (the long tail after the defaults)."""
    return tuple(
        s.name
        for s in CATALOGUE.values()
        if error_class in s.classes and s.name != "manual_intervention"
    )
