"""install_dependencies: the system packages the stack needs, installing only what is missing.

``APT_PACKAGES`` is a space-separated list; ``a|b|c`` accepts any of the alternatives as present
and installs the first when none is.
"""

from __future__ import annotations

from aideploy.engine.plan import Step, StepContext
from aideploy.engine.preview import StepPreview, Verdict
from aideploy.steps.stack.common import run, sh

MISSING = r"""
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
missing=""
for spec in $APT_PACKAGES; do
  found=""
  for alt in $(printf '%s' "$spec" | tr '|' ' '); do installed "$alt" && found=1 && break; done
  [ -n "$found" ] || missing="$missing ${spec%%|*}"
done
"""

CHECK = (
    MISSING
    + r"""
[ -z "$missing" ]
"""
)

WORK = (
    MISSING
    + r"""
if [ -z "$missing" ]; then echo "all packages present"; exit 0; fi
echo "installing:$missing"
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; else SUDO=""; fi
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n 1)
[ -n "$lists" ] || $SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
"""
)


def preview(ctx: StepContext) -> StepPreview:
    result = run(ctx, MISSING + 'echo "missing:$missing"', timeout=120)
    missing = result.stdout.strip().rpartition("missing:")[2].split()
    if not result.ok:
        return StepPreview(Verdict.UNKNOWN, f"check failed: {result.tail(1)}")
    if not missing:
        return StepPreview(Verdict.SKIP, "all packages present")
    return StepPreview(Verdict.CHANGE, f"would install: {' '.join(missing)}")


def step() -> Step:
    return Step(
        "install_dependencies",
        "Install the missing system packages (git, Python venv, PostgreSQL, nginx, ...)",
        commands=(sh(WORK),),
        check=sh(CHECK),
        verify=sh(CHECK),
        timeout=1800,
        preview=preview,
    )
