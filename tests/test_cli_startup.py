"""The CLI's start-up: commands that do not touch the knowledge base do not load it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "sklearn", "msgspec", "paramiko", "aideploy.cli.learn_store")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys; {code}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_importing_the_cli_loads_no_knowledge_base_machinery() -> None:
    assert _loaded_after("import aideploy.cli.main") == []


def test_a_learn_command_loads_its_modules_on_first_use() -> None:
    code = (
        "from click.testing import CliRunner; from aideploy.cli.main import cli; "
        "r = CliRunner().invoke(cli, ['learn', 'report', '--help']); assert r.exit_code == 0, r.output"
    )
    assert "aideploy.cli.learn_store" in _loaded_after(code)


def test_the_declared_one_line_help_is_each_commands_own() -> None:
    """`aideploy --help` lists commands from the lines declared in COMMANDS (without importing
    them); each must be the command's own help."""
    import click

    from aideploy.cli import learn, main

    for group, commands in ((main.cli, main.COMMANDS), (learn.learn, learn.COMMANDS)):
        ctx = click.Context(group)
        assert isinstance(group, click.Group)
        for name, entry in commands.items():
            command = group.get_command(ctx, name)
            assert command is not None, name
            assert entry.short_help == command.get_short_help_str(limit=10_000), name


def test_listing_the_commands_imports_none_of_them() -> None:
    code = (
        "from click.testing import CliRunner; from aideploy.cli.main import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'test-connection' in r.output"
    )
    assert _loaded_after(code) == []
