"""The root group's options, as every command reads them (light: no library floor imported)."""

from __future__ import annotations

from dataclasses import dataclass

import click

DEFAULT_CONFIG = "ai_deployment_config.json"


@dataclass(frozen=True)
class GlobalOptions:
    debug: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1 -v, 2 -vv / --debug
    config_path: str | None = None


def settings() -> GlobalOptions:
    """The options given to the root group of the command running now."""
    obj = click.get_current_context().find_object(GlobalOptions)
    return obj if obj is not None else GlobalOptions()
