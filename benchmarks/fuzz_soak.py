"""Fuzz soak: every target of ``tests/support/fuzz.py`` with a large random budget.

Reports, per target, the cases tried and the failures found (the smallest failing input
Hypothesis shrank to, and the error). Exits 1 if any target failed.

Usage: python benchmarks/fuzz_soak.py [-n 2000] [--seed N] [--only NAME]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support import fuzz


def _targets(folder: Path) -> dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], object]]]:
    return {
        "config": (fuzz.config_documents(), fuzz.config_target),
        "config-file": (fuzz.text_documents(), lambda t: fuzz.config_file_target(t, folder)),
        "kb-import": (fuzz.export_lines(), fuzz.import_target),
        "signature": (fuzz.error_texts(), fuzz.signature_target),
        "pattern": (
            st.tuples(fuzz.patterns(), st.text(max_size=50)),
            lambda pt: fuzz.pattern_target(*pt),
        ),
        "rules": (fuzz.text_documents(), fuzz.rules_target),
        "cli": (fuzz.cli_arguments(), lambda argv: fuzz.cli_target(argv, folder / "home")),
    }


def run(
    name: str,
    strategy: st.SearchStrategy[Any],
    target: Callable[[Any], object],
    n: int,
    chosen_seed: int | None,
) -> tuple[int, str | None]:
    tried = 0

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def case(value: Any) -> None:
        nonlocal tried
        tried += 1
        target(value)

    if chosen_seed is not None:
        case = seed(chosen_seed)(case)
    try:
        case()
    except Exception:
        return tried, traceback.format_exc(limit=3)[-2000:]
    return tried, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--examples", type=int, default=2000, help="cases per target")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default=None)
    args = parser.parse_args()
    total = failures = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aideploy-fuzz-") as folder:
        (Path(folder) / "home").mkdir()
        for name, (strategy, target) in _targets(Path(folder)).items():
            if args.only and name != args.only:
                continue
            t0 = time.monotonic()
            tried, failure = run(name, strategy, target, args.examples, args.seed)
            total += tried
            failures += failure is not None
            state = "ok" if failure is None else "FAILED"
            print(f"{name:12} {tried:7d} cases  {state}  ({time.monotonic() - t0:.0f}s)")
            if failure:
                print(failure)
    print(
        f"fuzz soak: {total} cases tried, {failures} failing target(s) "
        f"({time.monotonic() - started:.0f}s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
