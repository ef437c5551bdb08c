"""Where aideploy keeps its own files on the operator's machine."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """Base directory for state and logs: ``$AIDEPLOY_HOME`` or the user's state directory."""
    env = os.environ.get("AIDEPLOY_HOME")
    base = Path(env).expanduser() if env else Path(platformdirs.user_state_dir("aideploy"))
    return base


def deployments_dir() -> Path:
    return home() / "deployments"


def logs_dir() -> Path:
    return home() / "logs"
