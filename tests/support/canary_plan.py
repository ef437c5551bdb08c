"""A small plan that carries secrets every way a deployment meets them (for tests/test_canary.py):
it fetches ``APP_REPO`` with the stack's real download step, prints what careless software
prints (settings, private keys, a key trickled out line by line, URLs with passwords), fails
at a gate until the test opens it, then writes the app's environment while the test samples
the process list."""

from __future__ import annotations

from aideploy.engine.plan import Plan, Step
from aideploy.steps.stack import download_application

SHOW = r"""
cat "$LEAK_DIR/settings.py"
cat "$LEAK_DIR/openssh.key"
while IFS= read -r line; do printf '%s\n' "$line"; sleep 0.05; done < "$LEAK_DIR/rsa.key"
echo "db password is $DB_PASSWORD and the token $API_TOKEN"
echo "from the environment: $SECRET_FROM_ENV"
test -e "$GATE" || { echo "gate closed" >&2; exit 3; }
"""

WRITE_ENV = r"""
umask 077
printf 'DJANGO_SECRET_KEY=%s\nDB_PASSWORD=%s\nAPI_TOKEN=%s\nSECRET_FROM_ENV=%s\n' \
  "$DJANGO_SECRET_KEY" "$DB_PASSWORD" "$API_TOKEN" "$SECRET_FROM_ENV" > "$APP_ENV"
sleep 1.5
"""


def plan() -> Plan:
    return Plan(
        name="canary",
        description="Secrets through every input and output of a deployment.",
        env={
            "APP_NAME": "canary",
            "APP_REF": "main",
            "GIT_USERNAME": "x-access-token",
            "GIT_TOKEN_ENV": "",
            "GIT_TOKEN_FILE": "",
        },
        steps=(
            Step("fetch", "Fetch APP_REPO", work=download_application.work, timeout=120),
            Step("show", "Print settings and keys, then wait for the gate", commands=(SHOW,)),
            Step("write_env", "Write the app's environment", commands=(WRITE_ENV,)),
        ),
    )
