"""The guide's original ten patterns as a first-match table: the baseline of the benchmarks and
the simplest recovery advisor (:class:`GuideTable`, a RecoveryAdvisor)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

import regex

from aideploy.core.recovery import Candidate, Failure, Outcome
from aideploy.knowledge.classes import CATALOGUE, UNKNOWN
from aideploy.knowledge.rules.patterns import ErrorPattern
from aideploy.knowledge.rules.ruleset import DEFAULT_TIMEOUT, MAX_TEXT_CHARS, extract_details
from aideploy.knowledge.signature import signature_of

if TYPE_CHECKING:
    from aideploy.core.result import Result

GUIDE_PATTERNS: tuple[ErrorPattern, ...] = (
    ErrorPattern(
        "nodejs_conflicts",
        r"(?i)nodejs.*conflict|conflict.*nodejs|trying to overwrite.*node",
        "nodejs_conflict",
        "nodejs_clean_reinstall",
        "high",
        "Node.js conflicts",
    ),
    ErrorPattern(
        "package_not_found",
        r"(?i)unable to locate package|package .* not found|has no installation candidate",
        "package_not_found",
        "apt_update",
        "medium",
        "Package not found",
    ),
    ErrorPattern(
        "permission_denied",
        r"(?i)permission denied",
        "permission_denied",
        "fix_ownership",
        "high",
        "Permission denied",
    ),
    ErrorPattern(
        "database_connection_failed",
        r"(?i)could not connect to server|database connection failed|connection to database",
        "database_connection",
        "restart_service",
        "high",
        "Database connection failed",
    ),
    ErrorPattern(
        "port_in_use",
        r"(?i)address already in use|port .* already in use",
        "port_in_use",
        "free_port",
        "medium",
        "Port already in use",
    ),
    ErrorPattern(
        "connection_refused",
        r"(?i)connection refused",
        "connection_refused",
        "restart_service",
        "high",
        "Connection refused",
    ),
    ErrorPattern(
        "disk_space",
        r"(?i)no space left on device|disk.*full",
        "disk_full",
        "cleanup_disk",
        "critical",
        "Disk space insufficient",
    ),
    ErrorPattern(
        "dns_resolution",
        r"(?i)temporary failure in name resolution|could not resolve host|name resolution",
        "dns_failure",
        "dns_fallback_resolver",
        "medium",
        "DNS resolution failed",
    ),
    ErrorPattern(
        "ssl_certificate",
        r"(?i)ssl.*(?:error|fail)|certificate.*(?:error|fail|invalid)",
        "ssl_certificate",
        "certbot_retry",
        "high",
        "SSL certificate failed",
    ),
    ErrorPattern(
        "npm_permissions",
        r"(?i)npm ERR!.*EACCES|npm.*permission",
        "npm_permissions",
        "npm_user_prefix",
        "medium",
        "NPM permission errors",
    ),
)


class GuideTable:
    """The original first-match table: one class and one recovery per error, nothing learned.

    Implements RecoveryAdvisor so the executor can run with it and the benchmarks can compare.
    """

    def __init__(self, patterns: Iterable[ErrorPattern] = GUIDE_PATTERNS) -> None:
        self.patterns = tuple(patterns)
        self._compiled = [regex.compile(p.pattern) for p in self.patterns]

    def first_match(self, text: str) -> ErrorPattern | None:
        text = text[-MAX_TEXT_CHARS:]
        for p, compiled in zip(self.patterns, self._compiled, strict=True):
            try:
                if compiled.search(text, timeout=DEFAULT_TIMEOUT):
                    return p
            except TimeoutError:
                continue
        return None

    def classify(self, text: str) -> str:
        p = self.first_match(text)
        return p.error_class if p else UNKNOWN

    def detect(self, step: str, result: Result) -> Failure:
        text = result.output
        return Failure(
            step=step,
            result=result,
            error_class=self.classify(text),
            signature=signature_of(text),
            details=extract_details(text),
        )

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        p = self.first_match(failure.result.output)
        names = [p.recovery] if p else ["retry_with_backoff"]
        names.append("manual_intervention")
        why = f"guide pattern {p.name!r} ({p.description})" if p else "no guide pattern matched"
        return [
            Candidate(strategy=n, score=1.0 - i * 0.5, why=why, decided_by="rule")
            for i, n in enumerate(names)
            if n not in exclude and n in CATALOGUE
        ]

    def record(
        self,
        failure: Failure,
        strategy: str,
        outcome: Outcome,
        *,
        duration: float,
        decided_by: str,
        deployment_id: str | None = None,
    ) -> None:
        """The guide's table learns nothing."""
