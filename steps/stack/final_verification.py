"""final_verification: verify the new release, switch ``current`` to it, check through nginx.

With a new release: the control script's ``switch`` starts its gunicorn beside the live one, on
its own socket, and ``/api/health/`` must answer 200 there (nothing changes if not); then
``current`` (rename of a symlink) and nginx's upstream point at that server, nginx reloads
gracefully and the old server is drained and stopped: no request is dropped. The frontend page and
``/api/health/`` are then fetched through nginx; if that fails, the previous release is switched
back in the same way. On success the release is
marked verified and old releases are pruned (``KEEP_RELEASES``). The deploy lock is released
at the end of this step whatever its outcome.
Without a new release (nothing changed) only the checks through nginx run.
"""

from __future__ import annotations

from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, Verdict
from aideploy.steps.stack import lock
from aideploy.steps.stack.releases import PRUNE

CHECKS = r"""
through_nginx() {
  for path in / /api/health/; do
    i=0
    until curl -fsS -o /dev/null --max-time 10 -H "Host: $DOMAIN" "http://127.0.0.1:$HTTP_PORT$path"; do
      i=$((i+1)); [ $i -lt 20 ] || { echo "curl: (22) http://$DOMAIN:$HTTP_PORT$path did not answer 200" >&2; return 1; }
      sleep 0.5
    done
    if [ "$TLS" != off ]; then
      curl -fsS -o /dev/null -k --max-time 10 --resolve "$DOMAIN:$HTTPS_PORT:127.0.0.1" \
        "https://$DOMAIN:$HTTPS_PORT$path" || { echo "https $path failed" >&2; return 1; }
    fi
  done
  "$CTL" status || { echo "gunicorn for $APP_NAME is not running" >&2; return 1; }
  echo "http://$DOMAIN:$HTTP_PORT/ and /api/health/ answer 200 through nginx"
}
"""

WORK = (
    CHECKS
    + PRUNE
    + r"""
if ! pending; then
  through_nginx
  exit 0
fi
test -s "$REL/$FRONTEND_DIR/$FRONTEND_BUILD_DIR/index.html"
previous=$(basename "$(readlink "$APP_ROOT/current" 2>/dev/null)" 2>/dev/null || true)
switched=0; "$CTL" switch "$DEPLOYMENT_ID" || switched=$?
if [ "$switched" = 3 ]; then
  echo "release $DEPLOYMENT_ID failed its health check; current release left as it was" >&2
  exit 1
fi
if [ "$switched" = 0 ] && through_nginx; then
  mark verified
  prune_releases
  echo "release $DEPLOYMENT_ID is live"
  exit 0
fi
echo "release $DEPLOYMENT_ID failed verification through nginx; switching back to ${previous:-nothing}" >&2
if [ -n "$previous" ]; then "$CTL" switch "$previous" || true
else rm -f "$APP_ROOT/current"; "$CTL" stop || true; fi
exit 1
"""
)


def work(ctx: StepContext) -> Result:
    from aideploy.steps.stack.common import run

    result = run(ctx, WORK, timeout=300)
    # the deployment ends here either way: live, or the previous release kept serving
    released = lock.release(ctx)
    if result.ok and not released.ok:
        return released
    return result


def preview(ctx: StepContext) -> StepPreview:
    return StepPreview(Verdict.SKIP, "no new release: only the checks through nginx run")


def step() -> Step:
    return Step(
        "final_verification",
        "Verify the release, switch current to it, check the page and /api/health/ via nginx",
        work=work,
        timeout=300,
        follows=("download_application", "configure_backend", "configure_frontend"),
        preview=preview,
    )
