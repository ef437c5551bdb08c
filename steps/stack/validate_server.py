"""validate_server: OS, root or sudo, disk, memory, ports; takes the deploy lock."""

from __future__ import annotations

from aideploy.core.errors import ConfigError
from aideploy.core.result import Result
from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, Verdict
from aideploy.steps.stack import lock
from aideploy.steps.stack.common import fail, run, validate

SCRIPT = r"""
. /etc/os-release
case "${ID:-}:${ID_LIKE:-}" in
  debian:*|ubuntu:*|*:*debian*) ;;
  *) echo "unsupported OS: ${PRETTY_NAME:-unknown} (Debian or Ubuntu needed)" >&2; exit 1 ;;
esac
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  echo "Permission denied: need root or passwordless sudo" >&2; exit 1
fi
parent="$APP_ROOT"; while [ ! -d "$parent" ]; do parent=$(dirname "$parent"); done
for dir in / "$parent"; do
  avail=$(df -Pk "$dir" | awk 'NR==2 {print int($4/1024)}')
  if [ "$avail" -lt "$MIN_DISK_MB" ]; then
    echo "No space left on device: ${avail} MB free on $dir, ${MIN_DISK_MB} MB needed" >&2; exit 1
  fi
done
mem=$(awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo)
if [ "$mem" -lt "$MIN_MEMORY_MB" ]; then
  echo "Cannot allocate memory: ${mem} MB available, ${MIN_MEMORY_MB} MB needed" >&2; exit 1
fi
for port in "$HTTP_PORT" "$HTTPS_PORT"; do
  holders=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
  if [ -n "$holders" ] && ! printf '%s' "$holders" | grep -q '"nginx"'; then
    echo "Address already in use: port $port is held by: $holders" >&2; exit 1
  fi
done
echo "server ok: ${PRETTY_NAME:-?}, ${mem} MB memory available"
"""


def work(ctx: StepContext) -> Result:
    try:
        validate(ctx.env)
    except ConfigError as exc:
        return fail(ctx, "<validate settings>", str(exc))
    result = run(ctx, SCRIPT, timeout=60)
    if not result.ok:
        return result
    return lock.acquire(ctx)


def preview(ctx: StepContext) -> StepPreview:
    """The server's checks, without taking the lock."""
    try:
        validate(ctx.env)
    except ConfigError as exc:
        return StepPreview(Verdict.UNKNOWN, f"the deploy would stop here: {exc}")
    result = run(ctx, SCRIPT, timeout=60)
    if not result.ok:
        return StepPreview(Verdict.UNKNOWN, f"the deploy would stop here: {result.tail(1)}")
    return StepPreview(Verdict.SKIP, f"{result.tail(1)}; the deploy lock is taken here")


def step() -> Step:
    return Step(
        "validate_server",
        "Check OS, privileges, disk, memory and ports; take the deploy lock",
        work=work,
        timeout=120,
        preview=preview,
    )
