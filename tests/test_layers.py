"""The floors hold: no aideploy package imports another from inside a function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_local_imports.py"


def _check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK)], cwd=repo, capture_output=True, text=True, timeout=60
    )


def _repo(tmp_path: Path, engine_code: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "aideploy" = "aideploy", "aideploy.engine" = "engine" }\n'
    )
    for folder in ("aideploy", "engine"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "engine" / "runner.py").write_text(engine_code)
    return tmp_path


def test_the_repository_has_no_function_local_import_across_packages() -> None:
    result = _check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_import_of_another_package_inside_a_function_is_reported(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        "def f():\n    from aideploy.knowledge.store import KnowledgeBase\n    return KnowledgeBase\n",
    )
    result = _check(repo)
    assert result.returncode == 1
    assert "engine/runner.py:2: aideploy.engine.runner imports aideploy.knowledge.store" in (
        result.stdout
    )


def test_top_level_and_same_package_imports_pass(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        "from aideploy.core.errors import ConfigError\n"
        "def f():\n    from aideploy.engine.state import DeploymentState\n    return DeploymentState\n",
    )
    assert _check(repo).returncode == 0
