"""The Django/React/PostgreSQL/Nginx plan: the guide's eleven steps, in order."""

from __future__ import annotations

from aideploy.engine.plan import Plan
from aideploy.steps.stack import (
    configure_backend,
    configure_frontend,
    download_application,
    final_verification,
    handle_nodejs_conflicts,
    install_dependencies,
    lock,
    setup_authentication,
    setup_database,
    setup_services,
    setup_webserver,
    validate_server,
)
from aideploy.steps.stack.common import DEFAULTS

STEPS = (
    validate_server,
    setup_authentication,
    install_dependencies,
    handle_nodejs_conflicts,
    setup_database,
    download_application,
    configure_backend,
    configure_frontend,
    setup_webserver,
    setup_services,
    final_verification,
)


def plan() -> Plan:
    return Plan(
        name="stack",
        description="Deploy a Django + React app with PostgreSQL, gunicorn and nginx "
        "into $APP_ROOT/releases/<id>, switching $APP_ROOT/current after verification.",
        env=dict(DEFAULTS),
        steps=tuple(module.step() for module in STEPS),
        on_resume=lock.retake,
        on_failed=lock.release_after_failure,
    )
