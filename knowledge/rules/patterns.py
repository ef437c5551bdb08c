"""Custom error patterns (configuration, the knowledge base) and their field checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aideploy.core.errors import ConfigError
from aideploy.knowledge.classes import ERROR_CLASSES
from aideploy.knowledge.rules.safety import check_pattern_safe

SEVERITIES = ("low", "medium", "high", "critical")


def error_class_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a pattern's error class, or None."""
    if value not in ERROR_CLASSES:
        return f"unknown error class {value!r} (one of: {', '.join(ERROR_CLASSES)})"
    return None


def severity_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a pattern's severity, or None."""
    if value not in SEVERITIES:
        return f"must be one of {', '.join(SEVERITIES)}, got {value!r}"
    return None


@dataclass(frozen=True)
class ErrorPattern:
    """A custom detection rule, in the shape of the guide's ErrorPattern."""

    name: str
    pattern: str
    error_class: str
    recovery: str
    severity: str = "medium"
    description: str = ""
    retry_count: int = 3

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("a pattern needs a name")
        problem = error_class_problem(self.error_class)
        if problem:
            raise ConfigError(problem)
        problem = severity_problem(self.severity)
        if problem:
            raise ConfigError(f"severity {problem}")
        if not 0 <= self.retry_count <= 20:
            raise ConfigError("retry_count must be between 0 and 20")
        if not self.recovery:
            raise ConfigError("a pattern needs a recovery strategy")
        check_pattern_safe(self.pattern)

    @classmethod
    def from_row(cls, row: object) -> ErrorPattern:
        """Build from a KB row (object with attributes) or a mapping (config)."""
        get = row.get if isinstance(row, Mapping) else (lambda k, d=None: getattr(row, k, d))
        return cls(
            name=str(get("name", "") or ""),
            pattern=str(get("pattern", "") or ""),
            error_class=str(get("error_class", "") or ""),
            recovery=str(get("recovery", None) or get("recovery_function", "") or ""),
            severity=str(get("severity", "medium") or "medium").lower(),
            description=str(get("description", "") or ""),
            retry_count=int(get("retry_count", 3) or 0),
        )
