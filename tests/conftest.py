"""Shared pytest configuration. Fixture plugins for real services live in tests/support/."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import settings

# each entry is a module of fixtures (real sshd, real PostgreSQL, ...)
pytest_plugins: list[str] = ["tests.support.sshd", "tests.support.postgres"]

# CI (``.ci/run`` sets AIDEPLOY_CI=1) draws the same property-test cases on every run, so its
# result depends only on the code; elsewhere each run draws new cases, and every failing case
# found is pinned with ``@example`` so that CI keeps checking it.
settings.register_profile("ci", derandomize=True)
if os.environ.get("AIDEPLOY_CI") == "1":
    settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """With AIDEPLOY_FAIL_ON_SKIP=1 (scripts/test sets it) a skipped test fails: everything the
    suite needs (sshd, PostgreSQL, nginx, namespaces) can run on these machines, and a skip
    would hide a gap."""
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("AIDEPLOY_FAIL_ON_SKIP") == "1"
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, which is not allowed here: {report.longrepr}"
