"""kill -9 soak: deploy a small local plan with a failing step and its recovery, kill the CLI with
SIGKILL at a point spread over the deployment, resume it, and count what was kept.

Reports runs, how many were killed mid-deployment, how many resumed to completion, recovery
outcomes lost (attempts started but not decided in the knowledge base, or left pending) and the
knowledge base's ``PRAGMA integrity_check``. Exits 1 unless every run resumed with nothing lost.

Usage: python benchmarks/kill9_soak.py [-n 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.kill9 import soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aideploy-kill9-") as root:
        report = soak(Path(root), args.runs, seed=args.seed)
    for run in report.runs:
        if not run.resumable or run.lost or run.integrity != "ok":
            print(f"  problem: {run}")
    print(f"kill -9 soak: {report.summary()} ({time.monotonic() - started:.0f}s)")
    clean = report.resumable == len(report.runs) and report.lost == 0
    return 0 if clean and report.integrity_ok == len(report.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
