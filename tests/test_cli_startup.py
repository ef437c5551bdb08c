"""The CLI's start-up: commands that do not touch the knowledge base do not load it."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "sklearn", "msgspec", "aideploy.cli.learn_store")


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
