"""Shared pytest configuration. Fixture plugins for real services live in tests/support/."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import settings

# The suite never reads or writes the operator's own knowledge base, caches or state: every
# per-user directory aideploy (and each CLI it starts) resolves is under one temporary root.
_USER_DIRS = tempfile.mkdtemp(prefix="aideploy-tests-")
atexit.register(shutil.rmtree, _USER_DIRS, ignore_errors=True)
for _var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    os.environ[_var] = os.path.join(_USER_DIRS, _var.lower())

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
