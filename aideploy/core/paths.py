"""Where aideploy keeps its own files on the operator's machine."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from aideploy.core.private import private_dir


def home() -> Path:
    """Base directory for state and logs: ``$AIDEPLOY_HOME`` or the user's state directory."""
    env = os.environ.get("AIDEPLOY_HOME")
    base = Path(env).expanduser() if env else Path(platformdirs.user_state_dir("aideploy"))
    return base


def deployments_dir() -> Path:
    return home() / "deployments"


def logs_dir() -> Path:
    return home() / "logs"


def private_home(*parts: str) -> Path:
    """``home()/parts`` as a directory only this user can enter: ``home()`` and each level under
    it are created 0700, or made 0700 when they exist looser (they are aideploy's own)."""
    folder = private_dir(home(), tighten=True)
    for part in parts:
        folder = private_dir(folder / part, tighten=True)
    return folder
