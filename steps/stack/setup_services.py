"""setup_services: gunicorn as a service, under systemd where it runs, else a pidfile daemon.

Both cases go through one control script, ``/usr/local/sbin/aideploy-$APP_NAME``
(``switch RELEASE_ID|start|stop|restart|status|live``). It and the unit are rendered from
``templates/aideploy-ctl.sh.j2`` and ``templates/gunicorn.service.j2``. Each app server is an
instance ``<release id>.<slot>`` with its own socket ``/run/aideploy-$APP_NAME/<instance>.sock``:

* with systemd (``/run/systemd/system`` exists) an instance is the template unit
  ``aideploy-$APP_NAME@<instance>.service``;
* without (containers, the throwaway host) the script is the supervisor: ``start-stop-daemon``
  starts gunicorn detached (``--background``, its own session) with a pidfile beside the socket, as
  the deploy user; stopping sends TERM (gunicorn finishes its requests) and KILLs after 35 s.
  Nothing restarts it if it dies: run the deploy again (or the script's ``start``) after a reboot.

``switch RELEASE_ID`` is the zero-downtime switch: the new instance starts beside the live one,
must answer ``/api/health/`` on its own socket, then ``current`` and nginx's upstream file
(``/etc/aideploy/$APP_NAME/upstream.conf``) point at it, nginx reloads gracefully, its old workers
are waited for, and the old instance is stopped. ``restart`` switches to ``current`` again (a new
instance, the other slot), so it drops no request either.

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
from aideploy.engine.preview import StepPreview, Verdict, file_change
from aideploy.steps.stack.common import fail, remote_text, run, validate, verdict
from aideploy.steps.stack.render import render


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
    return render("aideploy-ctl.sh.j2", **_values(env))  # the template quotes each value


def render_unit(env: Mapping[str, str]) -> str:
    return render("gunicorn.service.j2", **_values(env))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHECK = r"""
[ "$(sha256sum < "$CTL" | cut -d' ' -f1)" = "$CTL_SHA" ]
if has_systemd; then
  [ "$(sha256sum < "/etc/systemd/system/aideploy-$APP_NAME@.service" | cut -d' ' -f1)" = "$UNIT_SHA" ]
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
  unit="/etc/systemd/system/aideploy-$APP_NAME@.service"
  cmp -s "$CONF/unit.new" "$unit" || changed=1
  install_file "$CONF/unit.new" "$unit" 644
  systemctl daemon-reload
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


def preview(ctx: StepContext) -> StepPreview:
    """The check, and the diffs of the control script and (under systemd) the unit."""
    try:
        ctl, unit, extra = render_ctl(ctx.env), render_unit(ctx.env), _extra(ctx.env)
    except ConfigError as exc:
        return StepPreview(Verdict.UNKNOWN, str(exc))
    app = ctx.env["APP_NAME"]
    files = [
        file_change(
            f"/usr/local/sbin/aideploy-{app}",
            remote_text(ctx, f"/usr/local/sbin/aideploy-{app}"),
            ctl,
        )
    ]
    if run(ctx, "has_systemd", timeout=30).ok:
        path = f"/etc/systemd/system/aideploy-{app}.service"
        files.append(file_change(path, remote_text(ctx, path), unit))
    return verdict(
        run(ctx, CHECK, timeout=30, **extra).ok,
        files,
        done_reason="service files unchanged and the app server running",
        change_reason="the service files would change or the app server (re)start",
    )


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
        preview=preview,
    )
