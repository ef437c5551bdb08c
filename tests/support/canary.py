"""What the canary tests share: canary values, a sampler of every process's command line, and
the search for canaries in text (tests/test_canary.py, tests/test_canary_fleet.py)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path


def canary(n: int) -> str:
    """A value that occurs nowhere by chance: ``cnry<n>x`` and 12 random hex digits."""
    return f"cnry{n:02d}x{os.urandom(6).hex()}"


class ProcessList:
    """Samples every process's command line until stopped (but the aideploy command the test
    runs: its own arguments are what the operator typed)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        raw = (proc / "cmdline").read_bytes()
                    except OSError:
                        continue
                    line = raw.replace(b"\0", b" ").decode("utf-8", "replace")
                    if " -m aideploy " not in line:
                        self.seen.add(line)
            self.samples += 1
            time.sleep(0.02)

    def __enter__(self) -> ProcessList:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def kb_dump(path: Path) -> str:
    """Every table of a SQLite knowledge base, as SQL text."""
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())


def hits(text: str, where: str, canaries: list[str]) -> list[str]:
    """``where: canary`` for each canary found in ``text``."""
    return [f"{where}: {c}" for c in canaries if c in text]
