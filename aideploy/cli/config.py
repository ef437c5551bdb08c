"""``aideploy config validate | docs``: the configuration file."""

from __future__ import annotations

import os
from pathlib import Path

import click

from aideploy.cli.options import DEFAULT_CONFIG, settings
from aideploy.services.config import load_config, schema_docs


@click.group("config")
def config_group() -> None:
    """Check and document the configuration file."""


@config_group.command("validate")
@click.argument("file", required=False, type=click.Path())
def config_validate(file: str | None) -> None:
    """Validate a configuration file (default: the one in use)."""
    path = Path(
        file or settings().config_path or os.environ.get("AIDEPLOY_CONFIG") or DEFAULT_CONFIG
    )
    config = load_config(path)
    names = ", ".join(sorted(config.server_profiles)) or "no profiles"
    click.echo(f"{path}: valid ({names})")


@config_group.command("docs")
def config_docs() -> None:
    """Print the configuration reference (generated from the schema)."""
    click.echo(schema_docs())
