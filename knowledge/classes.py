"""The error classes, and what the ranker reads from the strategy catalogue (DESIGN.md's contracts).

Names here are part of the public contract of ``aideploy learn classify`` and of the knowledge
base: the ranker, the rules, the dataset and the strategies all use exactly these strings. The
strategies themselves (risk, classes, description) are the one catalogue of
:mod:`aideploy.core.strategies`; importing this module checks that every class it names is one of
:data:`ERROR_CLASSES` and that every default strategy below is in it.
"""

from __future__ import annotations

from collections.abc import Mapping

from aideploy.core.recovery import Risk
from aideploy.core.strategies import (
    CATALOGUE,
    CATALOGUE_SOURCE,
    EVERY_CLASS,
    CatalogueError,
    StrategySpec,
)

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

__all__ = [
    "CATALOGUE",
    "CLASS_STRATEGIES",
    "ERROR_CLASSES",
    "STRATEGIES",
    "UNKNOWN",
    "StrategySpec",
    "check_catalogue",
    "related_strategies",
    "risk_of",
    "spec_of",
    "strategies_for",
]


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


def check_catalogue(catalogue: Mapping[str, StrategySpec] = CATALOGUE) -> None:
    """The catalogue and this module agree (run at import: a mistake stops it and says where)."""
    for spec in catalogue.values():
        for cls in spec.classes:
            if cls != EVERY_CLASS and cls not in ERROR_CLASSES:
                raise CatalogueError(
                    f"{CATALOGUE_SOURCE}: [{spec.name}] classes: {cls!r} is not an error class"
                )
    if set(CLASS_STRATEGIES) != set(ERROR_CLASSES):
        raise CatalogueError("CLASS_STRATEGIES must name every error class once")
    for cls, names in CLASS_STRATEGIES.items():
        for name in names:
            if name not in catalogue:
                raise CatalogueError(f"default strategy {name!r} of {cls} is not in the catalogue")


check_catalogue()


def spec_of(strategy: str) -> StrategySpec | None:
    """The catalogue's entry for a strategy; None for one it does not know (custom, plugin)."""
    return CATALOGUE.get(strategy)


def risk_of(strategy: str) -> Risk:
    """Risk level of a strategy; unknown (custom) strategies count as high risk."""
    spec = CATALOGUE.get(strategy)
    return spec.risk if spec else Risk.HIGH


def strategies_for(error_class: str) -> tuple[str, ...]:
    return CLASS_STRATEGIES.get(error_class, CLASS_STRATEGIES[UNKNOWN])


def related_strategies(error_class: str) -> tuple[str, ...]:
    """Every catalogue strategy that lists ``error_class`` (the long tail after the defaults)."""
    return tuple(
        s.name
        for s in CATALOGUE.values()
        if s.name != "manual_intervention" and s.serves(error_class)
    )
