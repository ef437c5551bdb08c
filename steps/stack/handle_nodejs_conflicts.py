"""handle_nodejs_conflicts: one working Node.js of at least ``NODE_MAJOR``, without package fights.

Detected and resolved: the distro's ``libnode-dev``/``libnode*``/``npm`` next to NodeSource's
``nodejs`` (which ships its own npm and headers: "trying to overwrite ... which is also in package
libnode-dev"), a half-configured dpkg, a missing or too old Node (NodeSource for ``NODE_MAJOR``).
"""

from __future__ import annotations

from aideploy.engine.plan import Step
from aideploy.steps.stack.common import sh

CHECK = r"""
command -v node >/dev/null && command -v npm >/dev/null
major=$(node -v | sed 's/^v\([0-9]*\).*/\1/')
[ "$major" -ge "$NODE_MAJOR" ]
npm -v >/dev/null
[ -z "$(dpkg --audit 2>/dev/null)" ]
"""

WORK = r"""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; else SUDO=""; fi
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
if [ -n "$(dpkg --audit 2>/dev/null)" ]; then
  echo "dpkg was interrupted: configuring pending packages"
  $SUDO dpkg --configure -a
fi
case "$(version nodejs)" in
  *nodesource*)
    for pkg in libnode-dev npm; do
      if installed "$pkg"; then
        echo "removing distro $pkg: it conflicts with NodeSource nodejs"
        $SUDO apt-get remove -y -q "$pkg"
      fi
    done ;;
esac
major=0
if command -v node >/dev/null; then major=$(node -v | sed 's/^v\([0-9]*\).*/\1/'); fi
if [ "$major" -lt "$NODE_MAJOR" ]; then
  echo "node ${major} is older than ${NODE_MAJOR}: installing NodeSource nodejs ${NODE_MAJOR}.x"
  for pkg in nodejs libnode-dev libnode72 libnode108 npm; do
    installed "$pkg" && $SUDO apt-get remove -y -q "$pkg"
  done
  $SUDO apt-get install -y -q ca-certificates curl gnupg
  $SUDO mkdir -p /etc/apt/keyrings
  curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key |
    $SUDO gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
  echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_${NODE_MAJOR}.x nodistro main" |
    $SUDO tee /etc/apt/sources.list.d/nodesource.list >/dev/null
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q nodejs
fi
if ! command -v npm >/dev/null; then $SUDO apt-get install -y -q npm; fi
echo "node $(node -v) at $(command -v node), npm $(npm -v)"
"""


def step() -> Step:
    return Step(
        "handle_nodejs_conflicts",
        "Resolve nodejs/libnode-dev/npm conflicts; make sure Node >= NODE_MAJOR works",
        commands=(sh(WORK),),
        check=sh(CHECK),
        verify=sh(CHECK),
        timeout=900,
    )
