"""setup_database: a running PostgreSQL cluster, the app's role and database, the app's env file.

The role's password is generated here (never given on a command line), registered as a secret so
it is masked anywhere it might show up, and written over SFTP to ``/etc/aideploy/$APP_NAME/db.env``
(0600, root) inside a 0700 directory. Shell commands read it from that file; SQL gets it on
standard input. ``$APP_ROOT/shared/app.env`` (0600, the deploy user) holds SECRET_KEY,
DATABASE_URL, ALLOWED_HOSTS for the app. Without systemd the cluster is started with
``pg_ctlcluster`` (which runs ``pg_ctl``).
"""

from __future__ import annotations

import base64
import secrets

from aideploy.core.errors import CommandError
from aideploy.core.redact import register_secret
from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, file_change
from aideploy.steps.stack.common import remote_text, run, sh, verdict
from aideploy.steps.stack.render import render

CLUSTER = r"""
cluster() { pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1, $2, $3, $4}'; }
"""

APP_ENV = r"""
render_app_env() {
  secret=$(grep '^SECRET_KEY=' "$SHARED/app.env" 2>/dev/null | cut -d= -f2-) || true
  [ -n "$secret" ] || secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  printf 'SECRET_KEY=%s\n' "$secret"
  printf 'DATABASE_URL=postgresql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$DB_PORT" "$DB_NAME"
  printf 'ALLOWED_HOSTS=%s,localhost,127.0.0.1\n' "$DOMAIN"
  printf 'CSRF_TRUSTED_ORIGINS=https://%s,http://%s\n' "$DOMAIN" "$DOMAIN"
  printf 'DEBUG=0\n'
}
"""

CHECK = (
    CLUSTER
    + APP_ENV
    + r"""
[ -f "$CONF/db.env" ] && . "$CONF/db.env"
set -- $(cluster)
[ "${4:-}" = online ] && [ "${3:-}" = "$DB_PORT" ]
PGPASSWORD="$DB_PASSWORD" psql -X -q -h 127.0.0.1 -p "$DB_PORT" -U "$DB_USER" -d "$DB_NAME" -Atc 'select 1' >/dev/null
[ "$(render_app_env)" = "$(cat "$SHARED/app.env")" ]
"""
)

WORK = (  # shell; SQL names are quoted by psql (%I, %L)
    CLUSTER  # noqa: S608
    + APP_ENV
    + r"""
. "$CONF/db.env"
set -- $(cluster)
if [ -z "${1:-}" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  echo "no PostgreSQL cluster: creating $ver/main on port $DB_PORT"
  pg_createcluster -p "$DB_PORT" "$ver" main
  set -- $(cluster)
fi
ver=$1; name=$2; port=$3; status=$4
if [ "$status" != online ]; then
  if [ "$port" != "$DB_PORT" ]; then pg_conftool "$ver" "$name" set port "$DB_PORT"; fi
  install -d -o postgres -g postgres -m 2775 /run/postgresql
  if has_systemd; then systemctl start "postgresql@$ver-$name"
  else pg_ctlcluster "$ver" "$name" start; fi
elif [ "$port" != "$DB_PORT" ]; then
  echo "PostgreSQL $ver/$name runs on port $port but DB_PORT is $DB_PORT" >&2; exit 1
fi
i=0; until pg_isready -q -p "$DB_PORT"; do i=$((i+1)); [ $i -lt 60 ] || { echo "could not connect to server: PostgreSQL on port $DB_PORT is not ready" >&2; exit 1; }; sleep 0.5; done
{ printf '\\set pw %s\n' "$DB_PASSWORD"; cat <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'u') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'u', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'d', :'u') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'d') \gexec
SQL
} | (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$DB_PORT" -v u="$DB_USER" -v d="$DB_NAME" -d postgres)
tmp="$SHARED/.app.env.new"
(umask 077; render_app_env > "$tmp")
chown "$DEPLOY_USER:" "$tmp"
# a running gunicorn read the old settings: setup_services restarts it when this flag is there
cmp -s "$tmp" "$SHARED/app.env" || touch "$SHARED/.app.env.changed"
install_file "$tmp" "$SHARED/app.env" 600
echo "database $DB_NAME and role $DB_USER ready on port $DB_PORT"
"""
)


RENDER = (
    CLUSTER
    + APP_ENV
    + r"""
if [ -f "$CONF/db.env" ]; then . "$CONF/db.env"; fi
: "${DB_PASSWORD:=generated-at-deploy}"
render_app_env | base64
"""
)


def preview(ctx: StepContext) -> StepPreview:
    """The check, and the diff of ``shared/app.env`` (its secret values masked)."""
    rendered = run(ctx, RENDER, timeout=30)
    if not rendered.ok:
        raise CommandError(f"cannot render app.env: {rendered.tail(2)}")
    new = base64.b64decode("".join(rendered.stdout.split())).decode()
    path = f"{ctx.env['APP_ROOT']}/shared/app.env"
    return verdict(
        run(ctx, CHECK, timeout=60).ok,
        [file_change(path, remote_text(ctx, path), new, env_file=True)],
        done_reason="database, role and app.env in place",
        change_reason="PostgreSQL, the role, the database or app.env would change",
    )


def work(ctx: StepContext) -> Result:
    prepared = run(ctx, 'mkdir -p "$CONF" && chmod 700 "$CONF" && test -s "$CONF/db.env"')
    if not prepared.ok:  # no password yet: generate one here and send it over SFTP
        password = secrets.token_hex(24)
        register_secret(password)
        conf = f"/etc/aideploy/{ctx.env['APP_NAME']}"
        db_env = render("db.env.j2", password=password)
        ctx.connector.write_file(f"{conf}/db.env", db_env.encode(), mode=0o600)
    return run(ctx, WORK, timeout=180)


def step() -> Step:
    return Step(
        "setup_database",
        "Start PostgreSQL; create the app's role and database with a generated password",
        work=work,
        check=sh(CHECK),
        verify=sh(CHECK),
        timeout=180,
        preview=preview,
    )
