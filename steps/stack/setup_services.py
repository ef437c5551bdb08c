"""setup_services: gunicorn as a service, under systemd where it runs, else a pidfile daemon.

Both cases go through one control script, ``/usr/local/sbin/aideploy-$APP_NAME``
(``start|stop|restart|status|candidate RELEASE_DIR``):

* with systemd (``/run/systemd/system`` exists) it drives the unit ``aideploy-$APP_NAME.service``;
* without (containers, the throwaway host) it is the supervisor: ``start-stop-daemon`` starts
  gunicorn detached (``--background``, its own session) with a pidfile in
  ``/run/aideploy-$APP_NAME/``, as the deploy user, from ``$APP_ROOT/current``; ``stop`` sends TERM
  and KILLs after 15 s; ``status`` checks the pidfile's process. Nothing restarts it if it dies:
  run the deploy again (or the control script) after a reboot.

``candidate`` starts the given release on a second socket, checks ``/api/health/`` and stops it:
the last step uses it to verify a release before ``current`` points at it.

The live gunicorn is restarted when the control script or unit changed, or when setup_database
rewrote ``shared/app.env`` (``shared/.app.env.changed``): a new DOMAIN reaches ``ALLOWED_HOSTS``
even when no new release is deployed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from aideploy.core.errors import ConfigError
from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.steps.stack.common import fail, q, run, validate

CTL = r"""#!/bin/sh
# managed by aideploy: gunicorn for {app}
set -eu
APP_ROOT={app_root}; NAME={app}; RUN_AS={user}; BACKEND={backend}
WSGI={wsgi}; WORKERS={workers}
RUN="/run/aideploy-$NAME"; LOG="$APP_ROOT/shared/log"; UNIT="aideploy-$NAME.service"
has_systemd() {{ [ -d /run/systemd/system ]; }}
daemon() {{  # daemon PIDFILE SOCKET RELEASE_DIR
  mkdir -p "$RUN" "$LOG"; chown "$RUN_AS:" "$RUN" "$LOG"; rm -f "$2"
  start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$1" \
    --chuid "$RUN_AS" --chdir "$3/$BACKEND" --startas /bin/sh -- -c \
    'set -a; . "$0/shared/app.env"; set +a; exec "$1/venv/bin/gunicorn" --workers "$2" --bind "unix:$3" --error-logfile "$0/shared/log/gunicorn.log" "$4"' \
    "$APP_ROOT" "$3" "$WORKERS" "$2" "$WSGI"
  i=0; until [ -S "$2" ]; do
    i=$((i+1))
    if [ $i -ge 120 ] || ! start-stop-daemon --status --pidfile "$1"; then
      echo "gunicorn did not start; last log lines:" >&2; tail -n 20 "$LOG/gunicorn.log" >&2 || true
      return 1
    fi
    sleep 0.25
  done
}}
halt() {{ start-stop-daemon --stop --quiet --pidfile "$1" --retry TERM/15/KILL/5 --remove-pidfile || true; }}
case "${{1:-}}" in
  start)
    if has_systemd; then exec systemctl start "$UNIT"; fi
    start-stop-daemon --status --pidfile "$RUN/gunicorn.pid" && [ -S "$RUN/gunicorn.sock" ] && exit 0
    daemon "$RUN/gunicorn.pid" "$RUN/gunicorn.sock" "$APP_ROOT/current" ;;
  stop)
    if has_systemd; then exec systemctl stop "$UNIT"; fi
    halt "$RUN/gunicorn.pid" ;;
  restart)
    if has_systemd; then exec systemctl restart "$UNIT"; fi
    halt "$RUN/gunicorn.pid"
    daemon "$RUN/gunicorn.pid" "$RUN/gunicorn.sock" "$APP_ROOT/current" ;;
  status)
    if has_systemd; then exec systemctl is-active -q "$UNIT"; fi
    start-stop-daemon --status --pidfile "$RUN/gunicorn.pid" ;;
  candidate)
    release="${{2:?candidate needs a release directory}}"
    halt "$RUN/candidate.pid"
    daemon "$RUN/candidate.pid" "$RUN/candidate.sock" "$release" || {{ halt "$RUN/candidate.pid"; exit 1; }}
    ok=0
    curl -fsS --max-time 20 --unix-socket "$RUN/candidate.sock" -H "Host: localhost" \
      http://localhost/api/health/ || ok=$?
    echo
    halt "$RUN/candidate.pid"
    exit "$ok" ;;
  *) echo "usage: $0 start|stop|restart|status|candidate RELEASE_DIR" >&2; exit 2 ;;
esac
"""

UNIT = """\
# managed by aideploy
[Unit]
Description=gunicorn for {app} (aideploy)
After=network.target postgresql.service

[Service]
User={user}
Group={user}
WorkingDirectory={app_root}/current/{backend}
EnvironmentFile={app_root}/shared/app.env
RuntimeDirectory=aideploy-{app}
RuntimeDirectoryPreserve=yes
ExecStart={app_root}/current/venv/bin/gunicorn --workers {workers} \
--bind unix:/run/aideploy-{app}/gunicorn.sock --error-logfile {app_root}/shared/log/gunicorn.log {wsgi}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def _values(env: Mapping[str, str]) -> dict[str, str]:
    validate(env)
    return {
        "app": env["APP_NAME"],
        "app_root": env["APP_ROOT"],
        "user": env["DEPLOY_USER"],
        "backend": env["BACKEND_DIR"],
        "wsgi": env["WSGI_APP"],
        "workers": env["GUNICORN_WORKERS"],
    }


def render_ctl(env: Mapping[str, str]) -> str:
    return CTL.format(**{k: q(v) for k, v in _values(env).items()})


def render_unit(env: Mapping[str, str]) -> str:
    return UNIT.format(**_values(env))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHECK = r"""
[ "$(sha256sum < "$CTL" | cut -d' ' -f1)" = "$CTL_SHA" ]
if has_systemd; then
  [ "$(sha256sum < "/etc/systemd/system/aideploy-$APP_NAME.service" | cut -d' ' -f1)" = "$UNIT_SHA" ]
fi
[ ! -e "$APP_ROOT/current" ] || "$CTL" status
[ ! -e "$SHARED/.app.env.changed" ]
"""

WORK = r"""
changed=""
[ ! -e "$SHARED/.app.env.changed" ] || changed=1
cmp -s "$CONF/ctl.new" "$CTL" || changed=1
install_file "$CONF/ctl.new" "$CTL" 755
if has_systemd; then
  unit="/etc/systemd/system/aideploy-$APP_NAME.service"
  cmp -s "$CONF/unit.new" "$unit" || changed=1
  install_file "$CONF/unit.new" "$unit" 644
  systemctl daemon-reload
  systemctl enable -q "aideploy-$APP_NAME.service"
else
  rm -f "$CONF/unit.new"
  echo "no systemd here: gunicorn is supervised by $CTL (start-stop-daemon, pidfile)"
fi
if [ -e "$APP_ROOT/current" ]; then
  if [ -n "$changed" ]; then "$CTL" restart; else "$CTL" start; fi
else
  echo "no release live yet: gunicorn starts when the first release is switched in"
fi
rm -f "$SHARED/.app.env.changed"
"""


def _extra(env: Mapping[str, str]) -> dict[str, str]:
    return {"CTL_SHA": _sha(render_ctl(env)), "UNIT_SHA": _sha(render_unit(env))}


def check(ctx: StepContext) -> bool:
    try:
        extra = _extra(ctx.env)
    except ConfigError:
        return False
    return run(ctx, CHECK, timeout=30, **extra).ok


def work(ctx: StepContext) -> Result:
    try:
        ctl, unit = render_ctl(ctx.env), render_unit(ctx.env)
    except ConfigError as exc:
        return fail(ctx, "<render service>", str(exc))
    prepared = run(ctx, 'mkdir -p "$CONF" && chmod 700 "$CONF"', timeout=30)
    if not prepared.ok:
        return prepared
    conf = f"/etc/aideploy/{ctx.env['APP_NAME']}"
    ctx.connector.write_file(f"{conf}/ctl.new", ctl.encode(), mode=0o755)
    ctx.connector.write_file(f"{conf}/unit.new", unit.encode())
    return run(ctx, WORK, timeout=120)


def step() -> Step:
    return Step(
        "setup_services",
        "Run gunicorn as a service (systemd, or a pidfile daemon without systemd)",
        work=work,
        check=check,
        verify=check,
        timeout=180,
    )
