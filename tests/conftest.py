"""Shared pytest configuration. Fixture plugins for real services live in tests/support/."""

from __future__ import annotations

# each entry is a module of fixtures (real sshd, real PostgreSQL, ...)
pytest_plugins: list[str] = ["tests.support.sshd", "tests.support.postgres"]
