"""configure_backend: the release's virtualenv, its requirements, migrations and static files.

The environment is keyed by the requirements file's hash and the Python version
(``.aideploy/python-env``, see :mod:`envcache`). When an earlier release has the same key, its ``venv`` is copied into
this release (``cp --reflink=auto -a``: copy-on-write where the filesystem can, a real copy
otherwise; never shared, so each release keeps its own environment and a rollback its own) and the
paths inside it are pointed at the new release: nothing is installed. Otherwise a new venv is built,
with pip's cache kept in ``$APP_ROOT/shared/cache/pip``. The step says which, and why.

A ``pg_dump`` of the database is taken before migrating (when a release is already live), into
``$APP_ROOT/shared/backups/db-<deployment id>.dump``; ``rollback --with-database`` restores it.
"""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh
from aideploy.steps.stack.envcache import HELPERS

CHECK = r"""
if pending; then marked backend; else current_verified; fi
"""

WORK = r"""
cd "$REL/$BACKEND_DIR"
[ -f requirements.txt ] || { echo "no $BACKEND_DIR/requirements.txt in the release" >&2; exit 1; }
version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') || {
  echo "cannot run $PYTHON" >&2; exit 1; }
key="requirements=$(sha256sum < requirements.txt | cut -d' ' -f1) python=$(readlink -f "$PYTHON")-$version"
if [ "$(cat "$REL/.aideploy/python-env" 2>/dev/null)" != "$key" ]; then
  rm -rf "$REL/venv" "$REL/venv.partial"
  from=$(env_source python "$key" venv/bin/python)
  if [ -n "$from" ]; then
    cp -a --reflink=auto "$APP_ROOT/releases/$from/venv" "$REL/venv.partial"
    # scripts and pyvenv.cfg name the venv they were installed in: name this one
    grep -rlIF --null "$APP_ROOT/releases/$from/venv" "$REL/venv.partial/bin" "$REL/venv.partial/pyvenv.cfg" |
      xargs -0 -r sed -i "s|$APP_ROOT/releases/$from/venv|$REL/venv|g"
    mv -T "$REL/venv.partial" "$REL/venv"
    echo "python environment: reused from release $from (requirements.txt and python unchanged); 0 packages installed"
  else
    why=$(env_change python "$key" requirements "requirements.txt changed" python "python changed")
    mkdir -p "$SHARED/cache/pip"
    "$PYTHON" -m venv "$REL/venv"
    if ! "$REL/venv/bin/pip" install --disable-pip-version-check --prefer-binary \
        --cache-dir "$SHARED/cache/pip" -r requirements.txt > "$REL/.aideploy/pip.log" 2>&1; then
      tail -n 30 "$REL/.aideploy/pip.log" >&2; exit 1
    fi
    count=$(sed -n 's/^Successfully installed //p' "$REL/.aideploy/pip.log" | wc -w)
    echo "python environment: rebuilt ($why); $count packages installed"
  fi
  printf '%s\n' "$key" > "$REL/.aideploy/python-env"
fi
runuser -u "$DEPLOY_USER" -- "$REL/venv/bin/python" -c '' || {
  echo "Permission denied: $DEPLOY_USER cannot run $PYTHON (the venv's interpreter); use a system Python" >&2
  exit 1; }
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
# migrate, then collectstatic, in one start of Django (each start costs about a second)
STATIC_ROOT="$REL/static" "$REL/venv/bin/python" manage.py shell -c '
from django.core.management import call_command
call_command("migrate", interactive=False)
call_command("collectstatic", interactive=False, verbosity=0)
'
mark backend
"""


def step() -> Step:
    return Step(
        "configure_backend",
        "Reuse or build the virtualenv, back up the database, migrate, collectstatic",
        commands=(sh(HELPERS + WORK),),
        check=sh(CHECK),
        timeout=1200,
        follows=("download_application",),
    )
