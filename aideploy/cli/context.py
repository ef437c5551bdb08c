"""What the commands that act on a target share: the configuration and the target options."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from aideploy.cli.options import DEFAULT_CONFIG, settings
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


_TARGET_OPTIONS = (
    "profile",
    "server",
    "username",
    "port",
    "key_file",
    "local",
    "accept_new_host_key",
)


def target_options(*, local: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options that say where a command goes; they reach it as ``target_opts``, ready for
    :func:`resolve_target`."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            opts = {key: kwargs.pop(key) for key in _TARGET_OPTIONS if key in kwargs}
            return func(target_opts=opts, **kwargs)

        options = [
            click.option("--profile", help="Server profile from the configuration file."),
            click.option("--server", help="Host name or address (overrides the profile's)."),
            click.option("--user", "username", help="Remote user."),
            click.option("--port", type=click.IntRange(1, 65535), help="SSH port."),
            click.option("--key-file", metavar="FILE", type=click.Path(), help="SSH private key."),
        ]
        if local:
            options.append(click.option("--local", is_flag=True, help="This machine, without SSH."))
        options.append(
            click.option(
                "--accept-new-host-key",
                is_flag=True,
                help="Trust and record the host key of a server seen for the first time.",
            )
        )
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def secret_prompt() -> Callable[[str], str] | None:
    """Ask for a passphrase or password on the terminal, unechoed; None without a terminal."""
    if not sys.stdin.isatty():
        return None
    return lambda prompt: str(click.prompt(prompt, hide_input=True))
