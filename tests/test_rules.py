from __future__ import annotations

import time
from collections import defaultdict

import pytest

from aideploy.core.errors import ConfigError
from aideploy.knowledge.classes import CATALOGUE, CLASS_STRATEGIES, ERROR_CLASSES, UNKNOWN
from aideploy.knowledge.corpus import load_bundled, train_examples
from aideploy.knowledge.history import ListHistory
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.rules import (
    BUILTIN_RULES,
    GUIDE_PATTERNS,
    ErrorPattern,
    GuideTable,
    Rule,
    RuleSet,
    UnsafePatternError,
    check_pattern_safe,
)


def test_every_class_has_rules_and_strategies() -> None:
    covered = {r.error_class for r in BUILTIN_RULES}
    assert covered == set(ERROR_CLASSES) - {UNKNOWN}
    assert set(CLASS_STRATEGIES) == set(ERROR_CLASSES)
    for strategies in CLASS_STRATEGIES.values():
        assert all(s in CATALOGUE for s in strategies)
    for rule in BUILTIN_RULES:
        assert all(s in CATALOGUE for s in rule.strategies), rule.name


TRAIN = [e for e in train_examples(load_bundled()) if not e.synthetic]
BY_CLASS: dict[str, list[str]] = defaultdict(list)
for _e in TRAIN:
    BY_CLASS[_e.error_class].append(_e.text)


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    return Ranker(ListHistory(), explore=0.0)


@pytest.mark.skipif(not TRAIN, reason="no bundled corpus")
@pytest.mark.parametrize("error_class", sorted(set(ERROR_CLASSES)))
def test_detection_on_train_split(error_class: str, ranker: Ranker) -> None:
    texts = BY_CLASS.get(error_class, [])
    if not texts:
        pytest.skip(f"no train examples for {error_class}")
    analyses = ranker.analyze_many(texts)
    right = sum(a.error_class == error_class for a in analyses)
    assert right / len(texts) >= 0.85, f"{error_class}: {right}/{len(texts)}"
    # rules alone already carry a good part of every class but 'unknown'
    rules = RuleSet()
    by_rules = 0
    for text in texts:
        scores = rules.class_scores(rules.match(text))
        by_rules += bool(scores) and max(scores, key=lambda c: scores[c]) == error_class
    if error_class != UNKNOWN:
        assert by_rules / len(texts) >= 0.4, f"{error_class}: rules {by_rules}/{len(texts)}"


@pytest.mark.parametrize(
    ("text", "error_class", "first", "details"),
    [
        (
            "nginx: [emerg] bind() to 0.0.0.0:8080 failed (98: Address already in use)",
            "port_in_use",
            "free_port",
            {"port": "8080"},
        ),
        (
            "Job for gunicorn.service failed because the control process exited with error code.",
            "service_failed",
            "restart_service",
            {"service": "gunicorn"},
        ),
        (
            "bash: npm: command not found",
            "command_not_found",
            "install_missing_command",
            {"command": "npm"},
        ),
        (
            "E: Unable to locate package python3.12-venv",
            "package_not_found",
            "apt_update",
            {"package": "python3.12-venv"},
        ),
        (
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234",
            "apt_lock",
            "wait_for_apt_lock",
            {"path": "/var/lib/dpkg/lock-frontend"},
        ),
        ("git@github.com: Permission denied (publickey).", "ssh_auth", "manual_intervention", {}),
        (
            "npm ERR! Error: EACCES: permission denied, mkdir '/usr/lib/node_modules/x'",
            "npm_permissions",
            "npm_user_prefix",
            {},
        ),
    ],
)
def test_rule_class_strategy_details(
    text: str, error_class: str, first: str, details: dict[str, str]
) -> None:
    rules = RuleSet()
    hits = rules.match(text)
    assert hits[0].error_class == error_class
    assert hits[0].strategies[0] == first
    found = rules.details(text, hits)
    for k, v in details.items():
        assert found.get(k) == v, (k, found)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a*)*",
        r"(a|aa)+",
        r"(\w+\s?)+$",
        r"(x+x+)+y",
        r"(.*a){20}",
        r"(a|a?)+",
        r"(",
        "x" * 2000,
    ],
)
def test_unsafe_patterns_rejected(pattern: str) -> None:
    with pytest.raises(UnsafePatternError):
        check_pattern_safe(pattern)
    assert issubclass(UnsafePatternError, ConfigError)


@pytest.mark.parametrize(
    "pattern", [r"(foo|bar)+", r"Could not get lock \S+", r"[a-z]+@[a-z]+\.com", r"(?:ab|cd)*x"]
)
def test_safe_patterns_accepted(pattern: str) -> None:
    check_pattern_safe(pattern)


def test_hostile_custom_pattern_cannot_hang() -> None:
    rules = RuleSet()
    with pytest.raises(UnsafePatternError):
        rules.add(ErrorPattern("evil", r"(a+)+$", "unknown", "retry_with_backoff"))
    # even if one slipped past validation, the search has a timeout
    evil = Rule(
        "evil", "unknown", r"(a|a)*(a|a)*(a|a)*c", ("retry_with_backoff",), 0.9, custom=True
    )
    rules.rules.append(evil)
    rules._compiled.append(evil.compiled())
    start = time.perf_counter()
    rules.match("a" * 40 + "b")
    assert time.perf_counter() - start < 2.0


def test_custom_pattern_wins() -> None:
    rules = RuleSet(
        [
            ErrorPattern(
                "flaky_cdn",
                r"CDN edge \d+ unavailable",
                "network_timeout",
                "retry_with_backoff",
                description="our CDN",
            )
        ]
    )
    hits = rules.match("fetch failed: CDN edge 42 unavailable")
    assert hits[0].rule == "flaky_cdn"
    assert hits[0].custom
    with pytest.raises(ConfigError):
        ErrorPattern("x", "y", "no_such_class", "retry_with_backoff").validate()


def test_error_pattern_from_row() -> None:
    class Row:
        name = "n"
        pattern = "foo"
        error_class = "disk_full"
        recovery = "cleanup_disk"
        severity = "HIGH"
        description = "d"
        retry_count = 2

    p = ErrorPattern.from_row(Row())
    assert (p.name, p.error_class, p.recovery, p.severity, p.retry_count) == (
        "n",
        "disk_full",
        "cleanup_disk",
        "high",
        2,
    )
    q = ErrorPattern.from_row(
        {
            "name": "m",
            "pattern": "x",
            "error_class": "dns_failure",
            "recovery_function": "retry_with_backoff",
        }
    )
    assert q.recovery == "retry_with_backoff"


def test_guide_table_is_the_original_first_match() -> None:
    assert len(GUIDE_PATTERNS) == 10
    guide = GuideTable()
    assert guide.classify("E: Unable to locate package foo") == "package_not_found"
    # first match: the generic permission pattern shadows the npm one, as in the original
    assert guide.classify("npm ERR! Error: EACCES: permission denied, mkdir '/usr/lib/x'") == (
        "permission_denied"
    )
    assert guide.classify("something nobody anticipated") == UNKNOWN


def test_literal_prefilter_never_skips_a_match() -> None:
    """Built-in rules are searched only in texts holding one of their literals: over every
    bundled text (as written, upper-cased and lower-cased) the hits are the same without it."""
    rules = RuleSet()
    assert sum(n is not None for n in rules._needles) >= len(rules.rules) // 2
    plain = RuleSet()
    plain._needles = [None] * len(plain.rules)
    texts = [e.text for e in load_bundled()]
    for text in [*texts, *(t.upper() for t in texts), *(t.lower() for t in texts)]:
        assert [h.rule for h in rules.match(text)] == [h.rule for h in plain.match(text)]
