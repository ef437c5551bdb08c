"""A click group whose commands are imported the first time they are looked up.

Each command lives in its own module of :mod:`aideploy.cli`; the group knows them by name and
``module:attribute``, so ``aideploy status`` never pays for loading the knowledge base, the ranker
or the SSH stack that ``deploy`` and ``learn`` need.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click


class LazyGroup(click.Group):
    """A group of commands named up front and imported on first use."""

    def __init__(self, *args: object, lazy: Mapping[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in self._lazy:
            found = self._load(cmd_name)
        return found

    def _load(self, name: str) -> click.Command:
        module_name, _, attribute = self._lazy[name].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self._lazy[name]} is not a click command")
        self.add_command(command, name)
        return command
