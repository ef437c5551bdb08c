"""configure_frontend: the frontend's build in the release, reused when nothing it is built from
changed; hands the release to the deploy user.

The build is keyed by the git tree of ``FRONTEND_DIR`` at the release's commit, package-lock.json's
hash and node's version (``.aideploy/frontend-env``, see :mod:`envcache`). When an earlier release
has the same key its build is copied (a backend-only change runs no npm at all); otherwise
``npm ci`` (with npm's cache kept in ``$APP_ROOT/shared/cache/npm``, ``--prefer-offline``) and
``npm run build``. The step says which, and why.
"""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh
from aideploy.steps.stack.envcache import HELPERS

CHECK = r"""
if pending; then marked frontend; else current_verified; fi
"""

WORK = r"""
cd "$REL/$FRONTEND_DIR"
[ -f package-lock.json ] || { echo "no $FRONTEND_DIR/package-lock.json in the release: npm ci needs one" >&2; exit 1; }
commit=$(cat "$REL/.aideploy/commit")
case "$FRONTEND_DIR" in .|./) sources="$commit^{tree}" ;; *) sources="$commit:${FRONTEND_DIR%/}" ;; esac
tree=$(git --git-dir="$SHARED/repo.git" rev-parse -q --verify "$sources" 2>/dev/null) || tree="unknown-$DEPLOYMENT_ID"
key="sources=$tree lock=$(sha256sum < package-lock.json | cut -d' ' -f1) node=$(node --version)"
from=$(env_source frontend "$key" "$FRONTEND_DIR/$FRONTEND_BUILD_DIR/index.html")
if [ -n "$from" ]; then
  rm -rf "$FRONTEND_BUILD_DIR" && mkdir -p "$(dirname "$FRONTEND_BUILD_DIR")"
  cp -a --reflink=auto "$APP_ROOT/releases/$from/$FRONTEND_DIR/$FRONTEND_BUILD_DIR" "$FRONTEND_BUILD_DIR"
  echo "frontend: build reused from release $from (sources, package-lock.json and node unchanged); npm not run"
else
  why=$(env_change frontend "$key" lock "package-lock.json changed" node "node changed" \
    sources "frontend sources changed")
  mkdir -p "$SHARED/cache/npm"
  npm ci --prefer-offline --cache "$SHARED/cache/npm" --no-audit --no-fund --loglevel=error
  npm run build
  rm -rf node_modules
  echo "frontend: built ($why)"
fi
test -s "$FRONTEND_BUILD_DIR/index.html" || {
  echo "build produced no $FRONTEND_DIR/$FRONTEND_BUILD_DIR/index.html" >&2; exit 1; }
printf '%s\n' "$key" > "$REL/.aideploy/frontend-env"
chown -R "$DEPLOY_USER:" "$REL"
mark frontend
"""


def step() -> Step:
    return Step(
        "configure_frontend",
        "Reuse the frontend's build, or install its packages and build it",
        commands=(sh(HELPERS + WORK),),
        check=sh(CHECK),
        timeout=1200,
        follows=("download_application",),
    )
