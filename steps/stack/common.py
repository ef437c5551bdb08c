"""What the stack's steps share: defaults, value checks, the shell prelude, remote helpers.

Every step command starts with :data:`PRELUDE`, which derives the release paths from the plan's
environment variables (never from text pasted into the command) and defines a few functions.

Layout on the server::

    $APP_ROOT/releases/<deployment id>/{backend,frontend,venv,static,.aideploy/}
    $APP_ROOT/current -> releases/<id>        (switched only after verification)
    $APP_ROOT/shared/{app.env,log/,backups/}
    /etc/aideploy/$APP_NAME/{db.env,tls/,backups/}   (root only)
"""

from __future__ import annotations

import base64
import re
import shlex
import textwrap
from collections.abc import Iterable, Mapping

from aideploy.core.errors import CommandError, ConfigError
from aideploy.core.result import Result
from aideploy.engine.plan import StepContext
from aideploy.engine.preview import FileChange, StepPreview, Verdict

DEFAULTS: dict[str, str] = {
    "APP_NAME": "sampleapp",
    "APP_REPO": "",
    "APP_REF": "main",
    "APP_ROOT": "/opt/sampleapp",
    "BACKEND_DIR": "backend",
    "FRONTEND_DIR": "frontend",
    "FRONTEND_BUILD_DIR": "dist",
    "WSGI_APP": "sampleapp.wsgi:application",
    "PYTHON": "/usr/bin/python3",  # system Python: the deploy user must be able to run it
    "NODE_MAJOR": "20",
    "DEPLOY_USER": "deploy",
    "DEPLOY_AUTHORIZED_KEY": "",
    "DB_NAME": "sampleapp",
    "DB_USER": "sampleapp",
    "DB_PORT": "5432",
    "DOMAIN": "localhost",
    "HTTP_PORT": "80",
    "HTTPS_PORT": "443",
    "TLS": "auto",  # auto | self-signed | certbot | off
    "CERTBOT_EMAIL": "",
    "CLIENT_MAX_BODY_SIZE": "10m",  # nginx's limit on a request body
    "GUNICORN_WORKERS": "2",
    "KEEP_RELEASES": "5",
    "MIN_DISK_MB": "1024",
    "MIN_MEMORY_MB": "512",
    "APT_PACKAGES": (
        "git curl openssl ca-certificates python3-venv postgresql "
        "nginx|nginx-light|nginx-core|nginx-full|nginx-extras"
    ),
    "GIT_TOKEN_ENV": "",  # name of a variable in aideploy's own environment holding the token
    "GIT_TOKEN_FILE": "",  # or a file on aideploy's machine holding it
    "GIT_USERNAME": "x-access-token",
    "BREAK_LOCK": "",  # a deployment id whose lock on the server may be broken
    "LOCK_WAIT": "0",  # seconds to wait for a deploy lock another deployment holds (deploy --wait)
}

_CHECKS: dict[str, tuple[str, str]] = {
    "APP_NAME": (r"[a-z][a-z0-9_-]{0,40}", "lower-case letters, digits, '-', '_'"),
    "APP_ROOT": (r"/[A-Za-z0-9._/-]+", "an absolute path of letters, digits, '.', '_', '-'"),
    "BACKEND_DIR": (r"[A-Za-z0-9._/-]+", "a relative path"),
    "FRONTEND_DIR": (r"[A-Za-z0-9._/-]+", "a relative path"),
    "FRONTEND_BUILD_DIR": (r"[A-Za-z0-9._/-]+", "a relative path"),
    "WSGI_APP": (r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*", "module:attribute"),
    "NODE_MAJOR": (r"[0-9]{1,3}", "a number"),
    "DEPLOY_USER": (r"[a-z_][a-z0-9_-]{0,30}", "a user name"),
    "DB_NAME": (r"[a-z_][a-z0-9_]{0,62}", "a lower-case SQL identifier"),
    "DB_USER": (r"[a-z_][a-z0-9_]{0,62}", "a lower-case SQL identifier"),
    "DB_PORT": (r"[0-9]{1,5}", "a port number"),
    "DOMAIN": (r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", "a host name"),
    "HTTP_PORT": (r"[0-9]{1,5}", "a port number"),
    "HTTPS_PORT": (r"[0-9]{1,5}", "a port number"),
    "TLS": (r"auto|self-signed|certbot|off", "auto, self-signed, certbot or off"),
    "CLIENT_MAX_BODY_SIZE": (r"[0-9]{1,6}[kKmMgG]?", "an nginx size such as 10m"),
    "GUNICORN_WORKERS": (r"[0-9]{1,2}", "a number"),
    "KEEP_RELEASES": (r"[0-9]{1,3}", "a number"),
    "MIN_DISK_MB": (r"[0-9]{1,9}", "a number"),
    "MIN_MEMORY_MB": (r"[0-9]{1,9}", "a number"),
    "LOCK_WAIT": (r"[0-9]{1,6}(\.[0-9]+)?", "a number of seconds"),
}


def validate(env: Mapping[str, str]) -> None:
    """Reject values that could not be used safely in file paths, SQL names or nginx config."""
    for key, (pattern, what) in _CHECKS.items():
        value = env.get(key, DEFAULTS.get(key, ""))
        if not re.fullmatch(pattern, value):
            raise ConfigError(f"{key}={value!r}: expected {what}")
        if key.endswith("_DIR") and (value.startswith("/") or ".." in value.split("/")):
            raise ConfigError(f"{key}={value!r}: must stay inside the release")
    for key in ("HTTP_PORT", "HTTPS_PORT", "DB_PORT"):
        if not 0 < int(env.get(key, DEFAULTS[key])) < 65536:
            raise ConfigError(f"{key}: not a port number")
    if not env.get("APP_REPO", ""):
        raise ConfigError("APP_REPO: set the application's git repository (--set APP_REPO=...)")


PRELUDE = r"""set -eu
umask 022
REL="$APP_ROOT/releases/$DEPLOYMENT_ID"
SHARED="$APP_ROOT/shared"
CONF="/etc/aideploy/$APP_NAME"
CTL="/usr/local/sbin/aideploy-$APP_NAME"
LOCK="/var/lock/aideploy-$APP_NAME.lock"
has_systemd() { [ -d /run/systemd/system ]; }
pending() { [ -d "$REL" ]; }
marked() { [ -f "$REL/.aideploy/$1" ]; }
mark() { mkdir -p "$REL/.aideploy" && date -u +%FT%TZ > "$REL/.aideploy/$1"; }
current_verified() { [ -f "$APP_ROOT/current/.aideploy/verified" ]; }
# install_file NEW DEST MODE: move NEW over DEST, keeping the old DEST in $CONF/backups if it differs
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then rm -f "$1"; return 0; fi
  if [ -f "$2" ]; then
    mkdir -p "$CONF/backups" && chmod 700 "$CONF/backups"
    cp -p "$2" "$CONF/backups/$(basename "$2").$DEPLOYMENT_ID"
  fi
  chmod "$3" "$1" && mv -f "$1" "$2"
}
nginx_running() { [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; }
"""


def sh(body: str) -> str:
    """A step command: the prelude, then ``body``."""
    return PRELUDE + textwrap.dedent(body).strip() + "\n"


def run(ctx: StepContext, body: str, timeout: float | None = None, **extra: str) -> Result:
    """Run a prelude'd script with the plan's environment plus ``extra`` variables."""
    return ctx.runner.run(sh(body), env={**ctx.env, **extra}, timeout=timeout)


def q(value: str) -> str:
    return shlex.quote(value)


_MISSING = "__aideploy_no_such_file__"


def remote_text(ctx: StepContext, path: str) -> str | None:
    """The text of the file at ``path`` on the target (None when there is none). Read-only."""
    # base64: the output comes back byte for byte (no redaction, no lost final newline)
    result = ctx.runner.run(
        f'if [ -f "$F" ]; then base64 < "$F"; else echo {_MISSING}; fi',
        env={**ctx.env, "F": path},
        timeout=30,
    )
    if not result.ok or result.truncated:
        raise CommandError(f"cannot read {path}: {result.tail(2) or 'too large'}")
    if result.stdout.strip() == _MISSING:
        return None
    try:
        return base64.b64decode("".join(result.stdout.split()), validate=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from None


def verdict(
    done: bool, files: Iterable[FileChange | None], *, done_reason: str, change_reason: str
) -> StepPreview:
    """A step's preview from its check (``done``) and the diffs of the files it renders."""
    changes = tuple(f for f in files if f is not None)
    if done and not changes:
        return StepPreview(Verdict.SKIP, done_reason)
    return StepPreview(Verdict.CHANGE, change_reason, changes)


def fail(ctx: StepContext, command: str, message: str) -> Result:
    return Result(command, ctx.connector.host, 1, "", message, 0.0)
