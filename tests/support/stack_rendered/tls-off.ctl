#!/bin/sh
# managed by aideploy: gunicorn for sampleapp, switched without dropping a request
#
# Each app server is an instance "<release id>.<slot>" (slot a or b) with its own socket
# $RUN/<instance>.sock. "switch RELEASE" starts a new instance beside the live one, checks
# /api/health/ on its socket, points current and nginx's upstream at it (graceful reload), waits
# for nginx's old workers to finish, then stops the old instance with TERM (gunicorn finishes
# its in-flight requests). The instance that passed the check is the one taking the traffic.
set -eu
APP_ROOT=/opt/sampleapp; NAME=sampleapp; RUN_AS=deploy; BACKEND=backend
WSGI=sampleapp.wsgi:application; WORKERS=2
RUN="/run/aideploy-$NAME"; LOG="$APP_ROOT/shared/log"; UNIT="aideploy-$NAME@"
UPSTREAM="/etc/aideploy/$NAME/upstream.conf"; DRAIN=30
has_systemd() { [ -d /run/systemd/system ]; }
nginx_master() { [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null && cat /run/nginx.pid; }
live() { cat "$RUN/live" 2>/dev/null || true; }
running() {  # running INSTANCE
  if has_systemd; then systemctl is-active -q "$UNIT$1.service"
  else start-stop-daemon --status --pidfile "$RUN/$1.pid"; fi
}
up() {  # up INSTANCE: start it on its own socket; 0 once it answers /api/health/
  rel="$APP_ROOT/releases/${1%.*}"; sock="$RUN/$1.sock"
  mkdir -p "$RUN" "$LOG"; chown "$RUN_AS:" "$RUN" "$LOG"; rm -f "$sock"
  if has_systemd; then systemctl start "$UNIT$1.service"
  else
    start-stop-daemon --start --quiet --background --make-pidfile --pidfile "$RUN/$1.pid" \
      --chuid "$RUN_AS" --chdir "$rel/$BACKEND" --startas "$0" -- serve "$1"
  fi
  i=0; until [ -S "$sock" ]; do
    i=$((i+1))
    if [ $i -ge 300 ] || ! running "$1"; then
      echo "gunicorn did not start; last log lines:" >&2; tail -n 20 "$LOG/gunicorn.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  curl -fsS -o /dev/null --max-time 20 --unix-socket "$sock" -H "Host: localhost" \
    http://localhost/api/health/
}
down() {  # down INSTANCE: TERM (gunicorn finishes its requests), KILL if it has not after 35 s
  if has_systemd; then systemctl stop "$UNIT$1.service" || true; systemctl disable -q "$UNIT$1.service" 2>/dev/null || true
  else start-stop-daemon --stop --quiet --pidfile "$RUN/$1.pid" --retry TERM/35/KILL/5 --remove-pidfile || true; fi
  rm -f "$RUN/$1.sock"
}
instances() {  # every instance this script started (and one left by the single-socket layout)
  if has_systemd; then
    systemctl list-units --plain --no-legend --state=active "$UNIT*.service" 2>/dev/null |
      sed -n "s/^$UNIT\\(.*\\)\\.service.*/\\1/p"
  fi
  for pid in "$RUN"/*.pid; do [ -e "$pid" ] && basename "$pid" .pid; done
  true
}
upstream() {  # upstream SOCKET: nginx's upstream file, replaced by a rename; nginx reloaded
  printf '# managed by aideploy: the live app server of %s\nupstream aideploy-%s-app {\n    server unix:%s;\n}\n' \
    "$NAME" "$NAME" "$1" > "$UPSTREAM.new"
  cp -p "$UPSTREAM" "$UPSTREAM.old" 2>/dev/null || true
  mv -f "$UPSTREAM.new" "$UPSTREAM"
  master=$(nginx_master) || { echo "nginx is not running: upstream set for its next start"; return 0; }
  if ! nginx -t -q; then
    echo "nginx: configuration test failed; upstream left as it was" >&2
    mv -f "$UPSTREAM.old" "$UPSTREAM"; return 1
  fi
  old=$(pgrep -P "$master" || true)
  if has_systemd; then systemctl reload nginx; else nginx -s reload; fi
  # nginx's old workers finish their requests to the old server, then exit: wait for them
  i=0; for pid in $old; do
    while kill -0 "$pid" 2>/dev/null && [ $i -lt $((DRAIN * 10)) ]; do i=$((i+1)); sleep 0.1; done
  done
  rm -f "$UPSTREAM.old"
}
switch() {  # switch RELEASE_ID: the zero-downtime switch (see the top of this file)
  target="$1"; before=$(live)
  case "$target" in ""|.*|*/*) echo "not a release: '$target' (is $APP_ROOT/current set?)" >&2; exit 1 ;; esac
  [ -d "$APP_ROOT/releases/$target" ] || { echo "no release $target under $APP_ROOT/releases" >&2; exit 1; }
  inst="$target.a"; [ "$before" != "$inst" ] || inst="$target.b"
  running "$inst" 2>/dev/null && down "$inst"
  if ! up "$inst"; then
    down "$inst"
    echo "release $target failed its health check on $RUN/$inst.sock; nothing switched" >&2
    exit 3
  fi
  ln -sfn "releases/$target" "$APP_ROOT/.current.$$" && mv -T "$APP_ROOT/.current.$$" "$APP_ROOT/current"
  if ! upstream "$RUN/$inst.sock"; then down "$inst"; exit 1; fi
  if has_systemd; then systemctl enable -q "$UNIT$inst.service" 2>/dev/null || true; fi
  printf '%s\n' "$inst" > "$RUN/live.new" && mv -f "$RUN/live.new" "$RUN/live"
  for old in $(instances); do [ "$old" = "$inst" ] || down "$old"; done
  legacy="/etc/systemd/system/aideploy-$NAME.service"  # the single-unit layout, replaced
  if has_systemd && [ -e "$legacy" ]; then
    systemctl disable -q --now "aideploy-$NAME.service" || true; rm -f "$legacy"; systemctl daemon-reload
  fi
  echo "app server $inst is live${before:+ (was $before)}"
}
case "${1:-}" in
  serve)  # run by start-stop-daemon or the unit as the deploy user: gunicorn in the foreground
    inst="${2:?serve needs an instance}"; rel="$APP_ROOT/releases/${inst%.*}"
    cd "$rel/$BACKEND"; set -a; . "$APP_ROOT/shared/app.env"; set +a
    exec "$rel/venv/bin/gunicorn" --workers "$WORKERS" --bind "unix:$RUN/$inst.sock" \
      --graceful-timeout 30 --error-logfile "$LOG/gunicorn.log" "$WSGI" ;;
  switch) switch "${2:?switch needs a release id}" ;;
  start)
    current=$(basename "$(readlink "$APP_ROOT/current")")
    inst=$(live); if [ -n "$inst" ] && [ "${inst%.*}" = "$current" ] && running "$inst"; then exit 0; fi
    switch "$current" ;;
  restart) switch "$(basename "$(readlink "$APP_ROOT/current")")" ;;
  stop)
    for inst in $(instances); do down "$inst"; done
    rm -f "$RUN/live" ;;
  status)
    inst=$(live); [ -n "$inst" ] && running "$inst" && [ -S "$RUN/$inst.sock" ] &&
      [ "${inst%.*}" = "$(basename "$(readlink "$APP_ROOT/current")")" ] ;;
  live) live ;;
  *) echo "usage: $0 switch RELEASE_ID|start|stop|restart|status|live" >&2; exit 2 ;;
esac
