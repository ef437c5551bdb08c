"""What the commands that act on a target share: the configuration and the target options."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from aideploy.cli.options import DEFAULT_CONFIG, settings
from aideploy.core.errors import UsageError
from aideploy.core.redact import register_found
from aideploy.services.config import Config, default_config, load_config

log = logging.getLogger("aideploy.cli")


def current_config() -> Config:
    """The configuration the running command uses: ``--config``, ``$AIDEPLOY_CONFIG``,
    ``./ai_deployment_config.json`` when present, else the defaults."""
    given = settings().config_path or os.environ.get("AIDEPLOY_CONFIG")
    if given:
        return load_config(Path(given))
    if Path(DEFAULT_CONFIG).is_file():
        return load_config(Path(DEFAULT_CONFIG))
    return default_config()


def secret_prompt() -> Callable[[str], str] | None:
    """Ask for a passphrase or password on the terminal, unechoed; None without a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: str(click.prompt(prompt, hide_input=True))


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    """``--set KEY=VALUE`` options as a dict; values of secret-looking keys and URL credentials
    are registered (masked wherever they would be shown; kept for resume in a private file)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE")
        out[key] = value
    register_found(out)
    return out
