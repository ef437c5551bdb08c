#!/bin/sh
# managed by aideploy: gunicorn for shop
set -eu
APP_ROOT=/srv/shop-app; NAME=shop; RUN_AS=www_shop; BACKEND=api
WSGI=shop.wsgi:app; WORKERS=4
RUN="/run/aideploy-$NAME"; LOG="$APP_ROOT/shared/log"; UNIT="aideploy-$NAME.service"
has_systemd() { [ -d /run/systemd/system ]; }
daemon() {  # daemon PIDFILE SOCKET RELEASE_DIR
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
}
halt() { start-stop-daemon --stop --quiet --pidfile "$1" --retry TERM/15/KILL/5 --remove-pidfile || true; }
case "${1:-}" in
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
    release="${2:?candidate needs a release directory}"
    halt "$RUN/candidate.pid"
    daemon "$RUN/candidate.pid" "$RUN/candidate.sock" "$release" || { halt "$RUN/candidate.pid"; exit 1; }
    ok=0
    curl -fsS --max-time 20 --unix-socket "$RUN/candidate.sock" -H "Host: localhost" \
      http://localhost/api/health/ || ok=$?
    echo
    halt "$RUN/candidate.pid"
    exit "$ok" ;;
  *) echo "usage: $0 start|stop|restart|status|candidate RELEASE_DIR" >&2; exit 2 ;;
esac
