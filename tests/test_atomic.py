"""Atomic writes: the old file or the new one, never half of one, and no temp file left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aideploy.core.atomic import atomic_file, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_replaces_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "state.json"
    write_atomic(target, b"one", mode=0o600)
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert _mode(target) == 0o600
    assert os.listdir(target.parent) == ["state.json"]


def test_mode_none_is_what_open_would_give(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        with atomic_file(tmp_path / "report.html", mode=None, text=True) as handle:
            handle.write("<p>ok</p>")
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.html").read_text() == "<p>ok</p>"
    assert _mode(tmp_path / "report.html") == _mode(tmp_path / "plain") == 0o640


def test_an_error_in_the_block_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "kb.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(target, text=True) as handle:
        handle.write("half of the new\n")
        raise RuntimeError("export failed")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["kb.jsonl"]
