"""The root group's options, as every command reads them (light: no library floor imported)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

DEFAULT_CONFIG = "ai_deployment_config.json"


@dataclass(frozen=True)
class GlobalOptions:
    debug: bool = False
    verbosity: int = 0  # -1 quiet, 0 normal, 1 -v, 2 -vv / --debug
    config_path: str | None = None
    #: ``--plain``: plain timestamped lines even on a terminal
    plain: bool = False


def settings() -> GlobalOptions:
    """The options given to the root group of the command running now (the defaults outside
    a command line)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(GlobalOptions) if ctx is not None else None
    return obj if obj is not None else GlobalOptions()


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
