"""setup_webserver: the nginx site serving the frontend build and proxying ``/api`` to gunicorn.

The site includes ``/etc/aideploy/$APP_NAME/upstream.conf``, the live app server, which the
control script's ``switch`` rewrites (setup_services); this step only writes a first one.
The site is rendered here from checked values (``templates/nginx-site.conf.j2``), sent over
SFTP, installed with the previous file kept in ``/etc/aideploy/$APP_NAME/backups``, tested with
``nginx -t`` (the previous file comes back if the test fails) and only then reloaded. TLS:
``certbot`` for a public domain when certbot is installed (``TLS=auto``) or asked for
(``TLS=certbot``), a self-signed certificate otherwise or when certbot fails; ``TLS=off`` serves
plain HTTP only.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping

from aideploy.core.errors import ConfigError
from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, Verdict, file_change
from aideploy.steps.stack.common import DEFAULTS, fail, remote_text, run, validate, verdict
from aideploy.steps.stack.render import render


def is_public(domain: str) -> bool:
    """A domain a public CA could issue for (not localhost, an IP, or a private suffix)."""
    try:
        ipaddress.ip_address(domain)
        return False
    except ValueError:
        pass
    private = (".localhost", ".local", ".test", ".internal", ".lan", ".example", ".invalid")
    return "." in domain and domain != "localhost" and not domain.endswith(private)


def render_site(env: Mapping[str, str]) -> str:
    validate(env)
    return render(
        "nginx-site.conf.j2",
        app=env["APP_NAME"],
        app_root=env["APP_ROOT"],
        domain=env["DOMAIN"],
        frontend_dir=env["FRONTEND_DIR"],
        frontend_build_dir=env["FRONTEND_BUILD_DIR"],
        http_port=env["HTTP_PORT"],
        https_port=env["HTTPS_PORT"],
        tls=env.get("TLS") != "off",
        tls_dir=f"/etc/aideploy/{env['APP_NAME']}/tls",
        upstream_file=f"/etc/aideploy/{env['APP_NAME']}/upstream.conf",
        client_max_body_size=env.get("CLIENT_MAX_BODY_SIZE", DEFAULTS["CLIENT_MAX_BODY_SIZE"]),
    )


def tls_mode(env: Mapping[str, str]) -> str:
    mode = env.get("TLS", "auto")
    if mode == "auto":
        return "certbot-if-installed" if is_public(env["DOMAIN"]) else "self-signed"
    return mode


CHECK = r"""
site="/etc/nginx/sites-available/aideploy-$APP_NAME"
[ "$(sha256sum < "$site" | cut -d' ' -f1)" = "$SITE_SHA" ]
[ "$(readlink "/etc/nginx/sites-enabled/aideploy-$APP_NAME")" = "$site" ]
[ ! -e /etc/nginx/sites-enabled/default ]
[ "$TLS_MODE" = off ] || [ -s "$CONF/tls/fullchain.pem" ]
[ -f "$CONF/upstream.conf" ]
if has_systemd; then systemctl is-active -q nginx; else nginx_running; fi
"""

WORK = r"""
site="/etc/nginx/sites-available/aideploy-$APP_NAME"
mkdir -p "$CONF/tls" && chmod 700 "$CONF/tls"
self_signed() {
  openssl req -x509 -nodes -newkey rsa:2048 -days 825 -subj "/CN=$DOMAIN" \
    -addext "subjectAltName=DNS:$DOMAIN" \
    -keyout "$CONF/tls/privkey.pem" -out "$CONF/tls/fullchain.pem" 2>/dev/null
  chmod 600 "$CONF/tls/privkey.pem"
}
case "$TLS_MODE" in
  off) ;;
  self-signed) [ -s "$CONF/tls/fullchain.pem" ] || self_signed ;;
  certbot|certbot-if-installed)
    live="/etc/letsencrypt/live/$DOMAIN"
    if [ ! -s "$live/fullchain.pem" ] && command -v certbot >/dev/null; then
      mkdir -p /var/www/letsencrypt
      certbot certonly --non-interactive --agree-tos --standalone --http-01-port "$HTTP_PORT" \
        ${CERTBOT_EMAIL:+--email "$CERTBOT_EMAIL"} ${CERTBOT_EMAIL:---register-unsafely-without-email} \
        --pre-hook 'nginx -s stop || true' --post-hook 'nginx || true' -d "$DOMAIN" ||
        echo "certbot failed for $DOMAIN: using a self-signed certificate" >&2
    fi
    if [ -s "$live/fullchain.pem" ]; then
      ln -sfn "$live/fullchain.pem" "$CONF/tls/fullchain.pem"
      ln -sfn "$live/privkey.pem" "$CONF/tls/privkey.pem"
    elif [ ! -s "$CONF/tls/fullchain.pem" ]; then
      [ "$TLS_MODE" = certbot-if-installed ] || echo "no certificate from certbot: self-signed" >&2
      self_signed
    fi ;;
esac
if [ ! -f "$CONF/upstream.conf" ]; then
  # the live app server is set by the control script's switch; until the first one, the socket
  # a single-socket install used (so a host deployed that way keeps serving until its switch)
  printf '# managed by aideploy: the live app server of %s\nupstream aideploy-%s-app {\n    server unix:/run/aideploy-%s/gunicorn.sock;\n}\n' \
    "$APP_NAME" "$APP_NAME" "$APP_NAME" > "$CONF/upstream.conf.new"
  mv -f "$CONF/upstream.conf.new" "$CONF/upstream.conf"
fi
had_site=""; [ -f "$site" ] && had_site=1
cp "$site" "$CONF/site.previous" 2>/dev/null || true
install_file "$CONF/site.new" "$site" 644
ln -sfn "$site" "/etc/nginx/sites-enabled/aideploy-$APP_NAME"
if [ -L /etc/nginx/sites-enabled/default ] || [ -e /etc/nginx/sites-enabled/default ]; then
  echo "disabling nginx's default site"
  mkdir -p "$CONF/backups"
  mv -f /etc/nginx/sites-enabled/default "$CONF/backups/nginx-default-site.enabled"
fi
if ! nginx -t 2>&1; then
  echo "nginx: configuration test failed; restoring the previous site" >&2
  if [ -n "$had_site" ]; then cp "$CONF/site.previous" "$site"
  else rm -f "$site" "/etc/nginx/sites-enabled/aideploy-$APP_NAME"; fi
  exit 1
fi
if has_systemd; then systemctl enable -q nginx 2>/dev/null || true; systemctl reload-or-restart nginx
elif nginx_running; then nginx -s reload
else nginx; fi
i=0; until nginx_running || { has_systemd && systemctl is-active -q nginx; }; do
  i=$((i+1)); [ $i -lt 40 ] || { echo "nginx did not start" >&2; exit 1; }; sleep 0.25; done
echo "nginx serves $DOMAIN on port $HTTP_PORT$([ "$TLS_MODE" = off ] || echo " and $HTTPS_PORT (TLS)")"
"""


def _extra(env: Mapping[str, str]) -> dict[str, str]:
    site = render_site(env)
    return {"SITE_SHA": hashlib.sha256(site.encode()).hexdigest(), "TLS_MODE": tls_mode(env)}


def check(ctx: StepContext) -> bool:
    try:
        extra = _extra(ctx.env)
    except ConfigError:
        return False
    return run(ctx, CHECK, timeout=30, **extra).ok


def preview(ctx: StepContext) -> StepPreview:
    """The check, and the site's diff against the one the server has."""
    try:
        site, extra = render_site(ctx.env), _extra(ctx.env)
    except ConfigError as exc:
        return StepPreview(Verdict.UNKNOWN, str(exc))
    path = f"/etc/nginx/sites-available/aideploy-{ctx.env['APP_NAME']}"
    return verdict(
        run(ctx, CHECK, timeout=30, **extra).ok,
        [file_change(path, remote_text(ctx, path), site)],
        done_reason="site unchanged, enabled and served",
        change_reason="nginx site, its certificate or nginx itself would change",
    )


def work(ctx: StepContext) -> Result:
    try:
        site = render_site(ctx.env)
        extra = _extra(ctx.env)
    except ConfigError as exc:
        return fail(ctx, "<render nginx site>", str(exc))
    prepared = run(ctx, 'mkdir -p "$CONF" && chmod 700 "$CONF"', timeout=30)
    if not prepared.ok:
        return prepared
    ctx.connector.write_file(f"/etc/aideploy/{ctx.env['APP_NAME']}/site.new", site.encode())
    return run(ctx, WORK, timeout=300, **extra)


def step() -> Step:
    return Step(
        "setup_webserver",
        "Configure nginx for the frontend and the API (nginx -t before reload), TLS",
        work=work,
        check=check,
        verify=check,
        timeout=300,
        preview=preview,
    )
