"""The ``aideploy learn`` command group; command modules attach themselves to it.

The modules holding the commands (and SQLAlchemy, scikit-learn behind them) are imported only
when a ``learn`` command is looked up, so ``aideploy deploy``/``status``/``list`` do not pay for
them at start-up.
"""

from __future__ import annotations

import importlib
import logging

import click

log = logging.getLogger(__name__)

COMMAND_MODULES = (
    "aideploy.cli.learn_store",
    "aideploy.cli.learn_ranker",
    "aideploy.cli.learn_html",
)


class _LazyGroup(click.Group):
    """A group whose command modules are imported the first time a command is looked up."""

    _loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in COMMAND_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:  # a partial install must still run deploys
                log.debug("learn commands from %s unavailable: %s", module, exc)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group("learn", cls=_LazyGroup)
def learn() -> None:
    """The knowledge base: what failed, what fixed it, and what to try next."""
