"""A click group whose commands are imported the first time they are run.

Each command lives in its own module of :mod:`aideploy.cli`; the group knows them by name,
``module:attribute`` and, for the group's own ``--help`` listing, their one-line help, so
``aideploy --help`` and ``aideploy status`` never load the knowledge base, the ranker or the SSH
stack that ``deploy`` and ``learn`` need. A test checks each declared line against the command's
own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class LazyCommand:
    #: where the command is: ``module:attribute``
    target: str
    #: its one-line help, as ``--help`` of the group lists it (empty: import it to know)
    short_help: str = ""


class LazyGroup(click.Group):
    """A group of commands named up front and imported on first use."""

    def __init__(self, *args: object, lazy: Mapping[str, LazyCommand], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in self._lazy:
            found = self._load(cmd_name)
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            entry = self._lazy.get(name)
            if entry is not None and entry.short_help and name not in self.commands:
                # the declared line, cut by click's own rule
                text = click.Command(name, help=entry.short_help).get_short_help_str(limit)
            else:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            rows.append((name, text))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _load(self, name: str) -> click.Command:
        module_name, _, attribute = self._lazy[name].target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self._lazy[name].target} is not a click command")
        self.add_command(command, name)
        return command
