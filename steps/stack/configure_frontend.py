"""configure_frontend: ``npm ci`` and ``npm run build`` in the release; hands it to the deploy user."""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh

CHECK = r"""
if pending; then marked frontend; else current_verified; fi
"""

WORK = r"""
cd "$REL/$FRONTEND_DIR"
npm ci --no-audit --no-fund --loglevel=error
npm run build
test -s "$FRONTEND_BUILD_DIR/index.html" || {
  echo "build produced no $FRONTEND_DIR/$FRONTEND_BUILD_DIR/index.html" >&2; exit 1; }
rm -rf node_modules
chown -R "$DEPLOY_USER:" "$REL"
mark frontend
"""


def step() -> Step:
    return Step(
        "configure_frontend",
        "Install the frontend's packages and build it",
        commands=(sh(WORK),),
        check=sh(CHECK),
        timeout=1200,
        follows=("download_application",),
    )
