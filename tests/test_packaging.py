"""A regular (wheel) install puts everything under aideploy/ and nothing generic at top level."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_IGNORE = (
    ".git",
    ".venv",
    ".typecheck",
    ".*_cache",
    "build",
    "*.egg-info",
    "node_modules",
    "__pycache__",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    source = tmp_path_factory.mktemp("source") / "aideploy"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*BUILD_IGNORE))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("aideploy-*.whl")
    return found


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("aideploy-")}
    assert tops == {"aideploy"}, tops
    for required in (
        "aideploy/py.typed",
        "aideploy/cli/main.py",
        "aideploy/core/errors.py",
        "aideploy/core/strategies.toml",
        "aideploy/services/deploy.py",
        "aideploy/engine/connectors/ssh.py",
        "aideploy/knowledge/signature.py",
        "aideploy/steps/example.py",
        "aideploy/steps/strategies/catalogue.py",
        "aideploy/steps/stack/render.py",
        "aideploy/steps/stack/templates/nginx-site.conf.j2",
        "aideploy/steps/stack/templates/gunicorn.service.j2",
        "aideploy/steps/stack/templates/aideploy-ctl.sh.j2",
        "aideploy/steps/stack/templates/db.env.j2",
        "aideploy/migrations/__init__.py",
    ):
        assert required in names, required
    assert any(n.startswith("aideploy/datasets/") and n.endswith(".jsonl") for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "aideploy = aideploy.cli.main:main" in text


def test_wheel_installs_and_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import aideploy, aideploy.cli.main as c, aideploy.steps.example as e; "
        "print(aideploy.__file__); print(len(e.plan().steps))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert proc.returncode == 0, proc.stderr
    first, steps = proc.stdout.split()
    assert first.startswith(str(target)) and int(steps) == 6
