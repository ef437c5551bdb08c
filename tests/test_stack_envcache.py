"""Which earlier release's environment a new release may reuse, and why it may not: the shell
helpers of ``steps/stack/envcache.py`` run with ``sh`` on real release directories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aideploy.steps.stack.envcache import HELPERS

KEY = "requirements=aaa python=/usr/bin/python3.11-3.11.2"
FIELDS = ("requirements", "requirements.txt changed", "python", "python changed")


def _release(root: Path, name: str, key: str | None, *, venv: bool = True) -> None:
    release = root / "releases" / name
    (release / ".aideploy").mkdir(parents=True)
    if key is not None:
        (release / ".aideploy" / "python-env").write_text(key + "\n")
    if venv:
        (release / "venv" / "bin").mkdir(parents=True)
        (release / "venv" / "bin" / "python").write_text("")


def _live(root: Path, name: str) -> None:
    (root / "current").symlink_to(f"releases/{name}")


def _sh(root: Path, call: str) -> str:
    result = subprocess.run(
        ["sh", "-c", f"set -eu\n{HELPERS}\n{call}"],
        env={"APP_ROOT": str(root), "DEPLOYMENT_ID": "30-new", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _source(root: Path, key: str = KEY) -> str:
    return _sh(root, f"env_source python '{key}' venv/bin/python")


def _change(root: Path, key: str) -> str:
    return _sh(root, f"env_change python '{key}' " + " ".join(f"'{f}'" for f in FIELDS))


def test_the_live_release_is_preferred_then_the_newest(tmp_path: Path) -> None:
    _release(tmp_path, "10-old", KEY)
    _release(tmp_path, "20-live", KEY)
    _release(tmp_path, "25-newer", KEY)
    _release(tmp_path, "30-new", KEY)  # this deployment's own release is never the source
    _live(tmp_path, "20-live")
    assert _source(tmp_path) == "20-live"
    (tmp_path / "current").unlink()
    _live(tmp_path, "10-old")
    (tmp_path / "releases" / "10-old" / ".aideploy" / "python-env").write_text("other\n")
    assert _source(tmp_path) == "25-newer"


def test_no_source_without_the_same_key_or_without_the_environment(tmp_path: Path) -> None:
    assert _source(tmp_path) == ""  # nothing deployed yet
    _release(tmp_path, "10-gone", KEY, venv=False)  # its venv was removed
    _release(tmp_path, "20-other", "requirements=bbb python=/usr/bin/python3.11-3.11.2")
    _release(tmp_path, "15-unrecorded", None)
    _release(tmp_path, "18-half.partial", KEY)
    _live(tmp_path, "20-other")
    assert _source(tmp_path) == ""


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("requirements=bbb python=/usr/bin/python3.11-3.11.2", "requirements.txt changed"),
        ("requirements=aaa python=/usr/bin/python3.12-3.12.1", "python changed"),
        ("requirements=bbb python=/usr/bin/python3.12-3.12.1", "requirements.txt changed"),
        (KEY, "no earlier release keeps this environment"),
    ],
)
def test_why_the_environment_is_rebuilt(tmp_path: Path, key: str, why: str) -> None:
    _release(tmp_path, "20-live", KEY)
    _live(tmp_path, "20-live")
    assert _change(tmp_path, key) == why


def test_why_without_a_live_release_or_its_record(tmp_path: Path) -> None:
    assert _change(tmp_path, KEY) == "no previous release"
    _release(tmp_path, "20-live", None)
    _live(tmp_path, "20-live")
    assert _change(tmp_path, KEY) == "the live release recorded no environment"
