"""CLI start-up: wall time of ``python -m aideploy ARGS`` for commands that stop before doing
work (``--help`` and ``list`` with an empty home), median of N runs.

``--compare PYTHON`` runs another interpreter (a virtualenv with another aideploy installed, e.g.
an older commit's) interleaved with this one, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = (("--help",), ("deploy", "--help"), ("list",), ("learn", "--help"))


def _once(python: str, args: tuple[str, ...], home: str) -> float:
    env = {**os.environ, "AIDEPLOY_HOME": home, "NO_COLOR": "1"}
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "aideploy", *args],
        env=env,
        cwd=home,  # not a checkout: `-m` would import the aideploy/ folder found there
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=120,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--compare", metavar="PYTHON", help="another interpreter to time")
    args = parser.parse_args()
    pythons = {"this": sys.executable}
    if args.compare:
        pythons["compare"] = args.compare
    times: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    with tempfile.TemporaryDirectory() as home:
        for python in pythons.values():  # warm the file cache and bytecode
            for command in COMMANDS:
                _once(python, command, home)
        for _ in range(args.runs):
            for label, python in pythons.items():
                for command in COMMANDS:
                    times.setdefault((label, command), []).append(_once(python, command, home))
    print(f"{'command':<16} " + " ".join(f"{label:>10}" for label in pythons))
    for command in COMMANDS:
        cells = [f"{statistics.median(times[(label, command)]):9.3f}s" for label in pythons]
        print(f"{' '.join(command):<16} " + " ".join(cells))
    print(f"median of {args.runs} runs each, interleaved; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
