"""The ``aideploy learn`` command group; command modules attach themselves to it."""

from __future__ import annotations

import click


@click.group("learn")
def learn() -> None:
    """The knowledge base: what failed, what fixed it, and what to try next."""
