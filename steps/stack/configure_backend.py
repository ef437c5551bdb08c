"""configure_backend: the release's virtualenv, its requirements, migrations and static files.

A ``pg_dump`` of the database is taken before migrating (when a release is already live), into
``$APP_ROOT/shared/backups/db-<deployment id>.dump``; ``rollback --with-database`` restores it.
"""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh

CHECK = r"""
if pending; then marked backend; else current_verified; fi
"""

WORK = r"""
cd "$REL/$BACKEND_DIR"
[ -x "$REL/venv/bin/python" ] || "$PYTHON" -m venv "$REL/venv"
runuser -u "$DEPLOY_USER" -- "$REL/venv/bin/python" -c '' || {
  echo "Permission denied: $DEPLOY_USER cannot run $PYTHON (the venv's interpreter); use a system Python" >&2
  exit 1; }
"$REL/venv/bin/pip" install -q --disable-pip-version-check --prefer-binary -r requirements.txt
if [ -e "$APP_ROOT/current" ]; then
  dump="$SHARED/backups/db-$DEPLOYMENT_ID.dump"
  if [ ! -s "$dump" ]; then
    (cd / && runuser -u postgres -- pg_dump -p "$DB_PORT" -Fc "$DB_NAME") > "$dump.partial"
    chmod 600 "$dump.partial" && mv "$dump.partial" "$dump"
    printf '%s\n' "$(readlink "$APP_ROOT/current")" > "$dump.release"
    echo "database backup: $dump"
  fi
fi
set -a; . "$SHARED/app.env"; set +a
"$REL/venv/bin/python" manage.py migrate --noinput
STATIC_ROOT="$REL/static" "$REL/venv/bin/python" manage.py collectstatic --noinput -v 0
mark backend
"""


def step() -> Step:
    return Step(
        "configure_backend",
        "Create the virtualenv, install requirements, back up the database, migrate, collectstatic",
        commands=(sh(WORK),),
        check=sh(CHECK),
        timeout=1200,
        follows=("download_application",),
    )
