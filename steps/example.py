"""The example plan: publish a small static site into releases/<id> with an atomic switch.

It runs anywhere with a POSIX shell (the local machine by default) and shows the whole engine:
checks that skip done work, verification, atomic ``current`` switch, pruning of old releases.
Values come in as environment variables: ``SITE_ROOT`` (where to publish), ``DEPLOYMENT_ID``.
"""

from __future__ import annotations

from aideploy.core import paths
from aideploy.engine.plan import Plan, Step


def plan() -> Plan:
    return Plan(
        name="example",
        description="Publish a static page into $SITE_ROOT/releases/<id> and switch to it.",
        env={"SITE_ROOT": str(paths.home() / "example-site"), "KEEP_RELEASES": "3"},
        steps=(
            Step(
                "validate_host",
                "Check the shell tools and free disk space",
                commands=(
                    'for c in sh mkdir ln mv df awk; do command -v "$c" >/dev/null || '
                    '{ echo "$c: command not found" >&2; exit 127; }; done',
                    'mkdir -p "$SITE_ROOT" && avail=$(df -Pk "$SITE_ROOT" | awk \'NR==2 {print $4}\')'
                    ' && [ "$avail" -gt 10240 ] || { echo "No space left on device: $SITE_ROOT" >&2;'
                    " exit 1; }",
                ),
            ),
            Step(
                "prepare_release",
                "Create the release directory",
                commands=('mkdir -p "$SITE_ROOT/releases/$DEPLOYMENT_ID"',),
                check='test -d "$SITE_ROOT/releases/$DEPLOYMENT_ID"',
            ),
            Step(
                "write_site",
                "Write the page into the release",
                commands=(
                    "printf '<!doctype html><title>aideploy example</title><p>release %s on %s"
                    ' at %s</p>\\n\' "$DEPLOYMENT_ID" "$(hostname)" "$(date -u +%FT%TZ)" '
                    '> "$SITE_ROOT/releases/$DEPLOYMENT_ID/index.html.tmp" && mv '
                    '"$SITE_ROOT/releases/$DEPLOYMENT_ID/index.html.tmp" '
                    '"$SITE_ROOT/releases/$DEPLOYMENT_ID/index.html"',
                ),
                check='test -s "$SITE_ROOT/releases/$DEPLOYMENT_ID/index.html"',
            ),
            Step(
                "switch_current",
                "Point current at the new release (atomic rename of a symlink)",
                commands=(
                    'ln -sfn "releases/$DEPLOYMENT_ID" "$SITE_ROOT/.current.tmp" && '
                    'mv -T "$SITE_ROOT/.current.tmp" "$SITE_ROOT/current"',
                ),
                check='[ "$(readlink "$SITE_ROOT/current")" = "releases/$DEPLOYMENT_ID" ]',
            ),
            Step(
                "prune_releases",
                "Keep the newest $KEEP_RELEASES releases",
                commands=(
                    'cd "$SITE_ROOT/releases" && ls -1t | tail -n +"$((KEEP_RELEASES + 1))" | '
                    'while read -r old; do [ "$old" = "$DEPLOYMENT_ID" ] || rm -rf -- "$old"; done',
                ),
            ),
            Step(
                "verify_site",
                "Check that current serves this release",
                commands=('grep -q "release $DEPLOYMENT_ID" "$SITE_ROOT/current/index.html"',),
            ),
        ),
    )
