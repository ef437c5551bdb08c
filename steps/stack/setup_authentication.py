"""setup_authentication: a deploy user that owns the app and logs in with its own key.

The key is ``DEPLOY_AUTHORIZED_KEY`` (a public key line) when given, otherwise the keys that let
this deployment in as the current user; after this step no root login is needed to run the app.
"""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh

CHECK = r"""
id -u "$DEPLOY_USER" >/dev/null 2>&1
home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)
[ -s "$home/.ssh/authorized_keys" ]
if [ -n "$DEPLOY_AUTHORIZED_KEY" ]; then grep -qxF "$DEPLOY_AUTHORIZED_KEY" "$home/.ssh/authorized_keys"; fi
[ -d "$APP_ROOT/shared/log" ] && [ "$(stat -c %U "$APP_ROOT")" = "$DEPLOY_USER" ]
"""

WORK = r"""
if ! id -u "$DEPLOY_USER" >/dev/null 2>&1; then
  useradd --system --create-home --shell /bin/bash --user-group "$DEPLOY_USER"
fi
home=$(getent passwd "$DEPLOY_USER" | cut -d: -f6)
mkdir -p "$home/.ssh"
touch "$home/.ssh/authorized_keys"
if [ -n "$DEPLOY_AUTHORIZED_KEY" ]; then
  grep -qxF "$DEPLOY_AUTHORIZED_KEY" "$home/.ssh/authorized_keys" ||
    printf '%s\n' "$DEPLOY_AUTHORIZED_KEY" >> "$home/.ssh/authorized_keys"
elif [ -s "$HOME/.ssh/authorized_keys" ]; then
  grep -v '^[[:space:]]*#' "$HOME/.ssh/authorized_keys" | while IFS= read -r line; do
    [ -z "$line" ] || grep -qxF "$line" "$home/.ssh/authorized_keys" ||
      printf '%s\n' "$line" >> "$home/.ssh/authorized_keys"
  done
fi
if [ ! -s "$home/.ssh/authorized_keys" ]; then
  echo "no key for $DEPLOY_USER: set DEPLOY_AUTHORIZED_KEY" >&2; exit 1
fi
chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys"
chown -R "$DEPLOY_USER:" "$home/.ssh"
mkdir -p "$APP_ROOT/releases" "$APP_ROOT/shared/log" "$APP_ROOT/shared/backups"
chmod 750 "$APP_ROOT/shared/backups"
chown "$DEPLOY_USER:" "$APP_ROOT" "$APP_ROOT/releases" "$APP_ROOT/shared" "$APP_ROOT/shared/log"
"""


def step() -> Step:
    return Step(
        "setup_authentication",
        "Create the deploy user with its own key and the app's directories",
        commands=(sh(WORK),),
        check=sh(CHECK),
        verify=sh(CHECK),
        timeout=60,
    )
