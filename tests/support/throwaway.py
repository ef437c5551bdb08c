"""The throwaway host for tests: the package's :mod:`aideploy.engine.throwaway`, re-exported, and
a module-scoped ``throwaway`` fixture (import it into the test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aideploy.engine.throwaway import (
    INSIDE_DIR,
    PASSWORD_USER,
    SSHD,
    AppRepo,
    ThrowawayHost,
    available,
    free_port,
    http_get,
    processes_in_namespace,
    throwaway_host,
)

__all__ = [
    "INSIDE_DIR",
    "PASSWORD_USER",
    "SSHD",
    "AppRepo",
    "ThrowawayHost",
    "available",
    "free_port",
    "http_get",
    "processes_in_namespace",
    "throwaway",
    "throwaway_host",
]


@pytest.fixture(scope="module")
def throwaway() -> Iterator[ThrowawayHost]:
    """A throwaway host shared by the tests of one module."""
    why = available()
    if why:
        pytest.skip(f"throwaway host unavailable: {why}")
    with throwaway_host() as host:
        yield host
