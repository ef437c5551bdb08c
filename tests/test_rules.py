from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

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
    RuleFileError,
    RuleSet,
    UnsafePatternError,
    builtin_rules,
    check_pattern_safe,
    compile_outside,
    extract_details,
    load_rules,
    parse_rules,
)
from aideploy.knowledge.rules.loader import BUILTIN_RULE_FILE
from aideploy.knowledge.rules.ruleset import _DETAIL_PATTERNS, _branches
from aideploy.knowledge.rules.safety import LiteralSet


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


# Patterns that make a backtracking matcher (Python's re, regex) take exponential or quadratic
# time: RE2 accepts them and matches them in time linear in the text.
BACKTRACKING = [
    r"(a+)+$",
    r"(a*)*$",
    r"(a|aa)+$",
    r"(\w+\s?)+$",
    r"(x+x+)+y",
    r"(.*a){20}$",
    r"(a|a?)+$",
    r"\s*\s*x$",  # adjacent quantifiers over the same characters: quadratic when backtracking
    r"\s*\s*\s*x$",
    r"[ ]* *\s*x$",
    r"(\w|\d)+!",  # overlapping alternatives under a repeat: exponential when backtracking
    r"(\d|[0-9a])+!",
]


def _adversarial(pattern: str) -> str:
    """A 50,000-character text that makes a backtracking matcher explode on ``pattern``."""
    if "x$" in pattern:
        return " " * 50_000 + "x!"
    if "!" in pattern:
        return "1" * 50_000 + "?"
    if "x+x+" in pattern:
        return "x" * 50_000
    return "a" * 50_000 + "!"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(", "pattern does not compile"),
        (r"[a-", "pattern does not compile"),
        ("x" * 2000, "longer than 1000 characters"),
        (r"(a+)\1", "backreference"),
        (r"(?P<word>\w+) (?P=word)", "backreference"),
        (r"foo(?=bar)", "lookahead or lookbehind"),
        (r"(?<!un)known", "lookahead or lookbehind"),
        (r"(?>a+)b", "atomic group or a possessive quantifier"),
        (r"a++b", "atomic group or a possessive quantifier"),
        (r"(a)?(?(1)b|c)", "conditional group"),
        (r"end\Z", r"\z"),
        (r"(?P<x>a)|(?P<x>b)", "two groups 'x'"),
    ],
)
def test_refused_patterns(pattern: str, message: str) -> None:
    with pytest.raises(UnsafePatternError) as info:
        check_pattern_safe(pattern)
    assert message in str(info.value)
    assert issubclass(UnsafePatternError, ConfigError)


def test_a_backreference_is_refused_with_a_clear_message() -> None:
    with pytest.raises(UnsafePatternError) as info:
        RuleSet().add(ErrorPattern("twice", r"(\w+) \1", "unknown", "retry_with_backoff"))
    message = str(info.value)
    assert message.startswith("pattern uses a backreference")
    assert "RE2 cannot express" in message
    assert "linear" in message


@pytest.mark.parametrize(
    "pattern",
    [
        r"(foo|bar)+",
        r"Could not get lock \S+",
        r"[a-z]+@[a-z]+\.com",
        r"(?:ab|cd)*x",
        *BACKTRACKING,
    ],
)
def test_linear_patterns_accepted(pattern: str) -> None:
    check_pattern_safe(pattern)


_MATCH_ALL = """
import sys, time
from aideploy.knowledge.rules import ErrorPattern, RuleSet
for pattern, text in zip(sys.argv[1::2], sys.argv[2::2]):
    rules = RuleSet(builtin=False)
    rules.add(ErrorPattern("evil", pattern, "unknown", "retry_with_backoff"))
    for t in (text, text + "\\n"):
        rules.match(t)
    print("returned", pattern, flush=True)
"""


def test_backtracking_patterns_match_long_texts_in_linear_time() -> None:
    """Every pattern above, as a custom rule, returns on its 50,000-character adversarial text
    (and the same with a final newline, where ``$`` is tried a second time). The subprocess and
    its generous timeout are the guard: a backtracking matcher would take hours, not seconds."""
    args = [a for p in BACKTRACKING for a in (p, _adversarial(p))]
    done = subprocess.run(
        [sys.executable, "-c", _MATCH_ALL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split("\n")[:-1] == [f"returned {p}" for p in BACKTRACKING]


@pytest.mark.parametrize("pattern", [r"\s*\s*x$", r"(\w|\d)+!"])
def test_those_texts_do_make_a_backtracking_matcher_explode(pattern: str) -> None:
    """The adversarial texts are adversarial: Python's ``re`` does not return on them (it would
    take about n^3 and 2^n steps); stopped after a second and a half."""
    with pytest.raises(subprocess.TimeoutExpired):
        code = "import re, sys; re.search(sys.argv[1], sys.argv[2])"
        subprocess.run([sys.executable, "-c", code, pattern, _adversarial(pattern)], timeout=1.5)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"CDN edge (?P<edge>\d+) unavailable", "fetch failed: CDN edge 42 unavailable"),
        (r"(?i)cdn EDGE (?P<edge>\d+)", "CDN edge 7"),
        (r"CDN edge", "cdn edge"),  # case matters unless the pattern says (?i)
        (r"(?P<a>x)|(?P<b>y)", "zzy"),
        (r"failed$", "step failed\n"),  # $ also before a final newline, as in Python
        (r"failed$", "step failed\nthen ok"),
        (r"(?m)^E: (?P<what>.+)$", "ok\nE: broken\nmore"),
        (r"a.c", "a\nc"),
        (r"(?s)a.c", "a\nc"),
        (r"^\s*(?P<n>\d+)\s+errors?\b", "  12 errors found"),
        (r"(a|ab)(c|bcd)(d*)", "abcd"),  # leftmost-first, as Python
        (r"x*", "aaa"),
        (r"[^\]]+\]", "[warn] x"),
        (r"\bnpm\b", "pnpm npm"),
    ],
)
def test_outside_patterns_match_like_python_re(pattern: str, text: str) -> None:
    """For what both support, RE2 finds the match Python's ``re`` finds, with the same groups."""
    ours = compile_outside(pattern).search(text)
    theirs = re.search(pattern, text)
    assert (ours is None) == (theirs is None)
    if ours is not None and theirs is not None:
        assert ours.group(0) == theirs.group(0)
        assert ours.groupdict() == theirs.groupdict()


def test_hostile_custom_pattern_cannot_hang() -> None:
    rules = RuleSet()
    rule = rules.add(ErrorPattern("evil", r"(a+)+$", "unknown", "retry_with_backoff"))
    assert rule.custom
    assert [h.rule for h in rules.match("a" * 40 + "b")] == []
    assert [h.rule for h in rules.match("b" + "a" * 40)] == ["evil"]
    # a rule that is not custom runs on the backtracking `regex` module, with a timeout
    evil = Rule("evil", "unknown", r"(a|a)*(a|a)*(a|a)*c", ("retry_with_backoff",), 0.9)
    rules.rules.append(evil)
    rules._compiled.append(evil.compiled())
    rules.timeout = 0.01
    rules.match("a" * 40 + "bc")
    assert rules.timeouts == 1


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
    """Built-in rules are searched only in texts holding one of their literals, and without the
    top-level branches whose literals the text lacks: over every bundled text (as written,
    upper-cased and lower-cased) the hits, what they matched and their details are the same
    without either."""
    rules = RuleSet()
    assert sum(n is not None for n in rules._needles) >= len(rules.rules) // 2
    assert sum(s is not None for s in rules._splits) >= len(rules.rules) // 2
    plain = RuleSet()
    plain._needles = [None] * len(plain.rules)
    texts = [e.text for e in load_bundled()]
    for text in [*texts, *(t.upper() for t in texts), *(t.lower() for t in texts)]:
        got = [(h.rule, h.matched, h.details) for h in rules.match(text)]
        assert got == [(h.rule, h.matched, h.details) for h in plain.match(text)]


def test_a_rule_splits_at_its_top_level_alternatives_only() -> None:
    assert _branches(r"a(b|c)|[|)]d|e\|f") == ("a(b|c)", "[|)]d", "e\\|f")
    assert _branches(r"[]|]x|y") == ("[]|]x", "y")
    assert _branches("(?i)a|b") is None  # a global flag would hold for the first branch only
    assert _branches("abc") is None


def test_the_literals_are_found_as_a_substring_search_finds_them() -> None:
    """The rules' literals are looked for in one RE2 pass: over bundled texts, over texts made of
    pieces of the literals (many partial matches) and over non-ASCII text and lone surrogates,
    it finds exactly the literals ``in`` finds."""
    rules = RuleSet()
    prefilter = rules._prefilter()
    literals = sorted({n for need in rules._needles if need for n in need})
    found = LiteralSet(literals)
    rng = random.Random(7)
    pieces = [lit[: rng.randint(1, len(lit))] for lit in literals for _ in range(3)]
    texts = [e.text.casefold() for e in load_bundled()[:300]]
    texts += ["".join(rng.choices(pieces, k=2000)) for _ in range(5)]
    texts += ["\udcff caf\u00e9 not found \u2603 permission denied", ""]
    for text in texts:
        assert sorted(literals[k] for k in found.present(text)) == [
            lit for lit in literals if lit in text
        ]
    assert len(prefilter.rules_of) >= len(literals)  # and the split rules' branches' literals


def test_the_details_literals_never_skip_a_detail() -> None:
    """A generic detail pattern is searched only in texts holding one of its literals: over every
    bundled text (as written, upper-cased and lower-cased) the details are the same without."""
    texts = [e.text for e in load_bundled()]
    for text in [*texts, *(t.upper() for t in texts), *(t.lower() for t in texts)]:
        plain: dict[str, str] = {}
        for key, pattern, _ in _DETAIL_PATTERNS:
            m = None if key in plain else pattern.search(text)
            if m:
                plain[key] = m.group(1)
        assert extract_details(text) == plain


# --- the rule file ------------------------------------------------------------------------------

GOOD = """
[[rule]]
name = "apt_lock"
error_class = "apt_lock"
weight = 0.96
pattern = ['Could not get lock (?P<path>\\S+)', '|dpkg frontend lock']

[[rule]]
name = "dpkg_interrupted"
error_class = "apt_lock"
weight = 0.95
strategies = ["dpkg_repair", "manual_intervention"]
pattern = 'dpkg was interrupted'
"""


def test_a_rule_file_is_read_in_order_with_defaults() -> None:
    first, second = parse_rules(GOOD)
    assert first.pattern == r"Could not get lock (?P<path>\S+)|dpkg frontend lock"
    assert first.strategies == CLASS_STRATEGIES["apt_lock"]
    assert second.strategies == ("dpkg_repair", "manual_intervention")
    assert (first.name, second.name, second.weight) == ("apt_lock", "dpkg_interrupted", 0.95)


def test_the_builtin_rules_are_the_packaged_file() -> None:
    assert BUILTIN_RULE_FILE.name == "rules.toml" and BUILTIN_RULE_FILE.is_file()
    assert load_rules(BUILTIN_RULE_FILE) == builtin_rules()
    assert [r.name for r in BUILTIN_RULES] == [r.name for r in builtin_rules()]
    assert len({r.name for r in BUILTIN_RULES}) == len(BUILTIN_RULES)


def _bad(entry: str) -> str:
    return GOOD + "\n[[rule]]\n" + entry


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 'high'\npattern = 'a'"),
            "rule 3 ('x'), field 'weight': expected a number from 0 to 1, got str 'high'",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 1.5\npattern = 'a'"),
            "rule 3 ('x'), field 'weight': expected a number from 0 to 1, got float 1.5",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5"),
            "rule 3 ('x'), field 'pattern': missing (expected a non-empty string or a list",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = 'a'\ncolour = 1"),
            "rule 3 ('x'), field 'colour': unknown field (the fields are: name, error_class,",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = ['a', 3]"),
            "rule 3 ('x'), field 'pattern': expected a non-empty string or a list of strings, got list",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lokc'\nweight = 0.5\npattern = 'a'"),
            "rule 3 ('x'), field 'error_class': unknown error class 'apt_lokc'",
        ),
        (
            _bad("name = 'x'\nerror_class = 'unknown'\nweight = 0.5\npattern = 'a'"),
            "rule 3 ('x'), field 'error_class': unknown error class 'unknown'",
        ),
        (
            _bad(
                "name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = 'a'\n"
                "strategies = ['wait_for_apt_lock', 'reboot_the_moon']"
            ),
            "rule 3 ('x'), field 'strategies': unknown strategy 'reboot_the_moon'",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = 'lock (\\S+'"),
            "rule 3 ('x'), field 'pattern': does not compile: missing )",
        ),
        (
            _bad("name = 'apt_lock'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = 'a'"),
            "rule 3 ('apt_lock'), field 'name': the name of an earlier rule",
        ),
        (
            _bad("error_class = 'apt_lock'\nweight = 0.5\npattern = 'a'"),
            "rule 3, field 'name': missing",
        ),
        (
            _bad("name = 'x'\nerror_class = 'apt_lock'\nweight = true\npattern = 'a'"),
            "got bool True",
        ),
        (
            _bad(
                "name = 'x'\nerror_class = 'apt_lock'\nweight = 0.5\npattern = 'a'\nstrategies = []"
            ),
            "rule 3 ('x'), field 'strategies': expected a non-empty list of strategy names",
        ),
        ("rule = [1]", "custom.toml: rule 1: expected a table of fields, got int"),
        (GOOD + "\n[[rule]\n", "not valid TOML"),
        ("rules = []", "unknown top-level key 'rules'"),
        ("", "no [[rule]] entries"),
    ],
)
def test_a_bad_rule_file_names_the_rule_and_the_field(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, source="custom.toml")
    assert str(info.value).startswith("custom.toml: ")
    assert message in str(info.value)
    assert issubclass(RuleFileError, ConfigError)


def test_a_rule_file_must_cover_every_class_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert len(load_rules(path)) == 2
    with pytest.raises(RuleFileError, match=r"rules\.toml: no rule for error class '\w+'"):
        load_rules(path, every_class=True)
    with pytest.raises(RuleFileError, match="cannot read the rule file"):
        load_rules(tmp_path / "missing.toml")


@pytest.mark.parametrize("word", ["failed", "Failed", "FAILED"])
def test_a_word_before_no_such_file_is_not_taken_for_a_command(word: str) -> None:
    # psql says which socket it could not reach; "failed" is no command, and the failure's
    # cause must not change with the word's case
    text = (
        'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
        f"{word}: No such file or directory"
    )
    hits = RuleSet().match(text)
    assert "command_not_found" not in [h.rule for h in hits]
    assert {h.error_class for h in hits} == {"database_connection"}
    assert "command" not in Ranker(ListHistory(), explore=0.0).analyze(text).details
    # a script that is not there still is a missing command
    (hit,) = [h for h in RuleSet().match("bash: ./start.sh: No such file or directory")]
    assert hit.rule == "command_not_found" and hit.details["command"] == "start.sh"
