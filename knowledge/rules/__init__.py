"""Regex rules: error text -> error class, ordered candidate strategies and extracted details.

* :mod:`.patterns` - :class:`ErrorPattern` (a custom pattern from configuration or the knowledge
  base) and the checks of its error class and severity.
* :mod:`.safety` - patterns from outside are compiled and matched with RE2, in time linear in
  the text; :func:`check_pattern_safe` refuses what RE2 cannot express.
* :mod:`.ruleset` - :class:`RuleSet`: the built-in rules plus custom patterns, every hit
  (:class:`RuleHit`) with its weight and the details its named groups captured.
* :mod:`.loader` - reads and checks a rule file; the built-in rules are ``rules.toml``.
* :mod:`.guide` - :data:`GUIDE_PATTERNS` / :class:`GuideTable`: the original system's ten
  patterns as a first-match table, the baseline of the benchmarks.
"""

from typing import Any

from aideploy.knowledge.rules import ruleset
from aideploy.knowledge.rules.guide import GUIDE_PATTERNS, GuideTable
from aideploy.knowledge.rules.loader import RuleFileError, builtin_rules, load_rules, parse_rules
from aideploy.knowledge.rules.patterns import (
    SEVERITIES,
    ErrorPattern,
    error_class_problem,
    severity_problem,
)
from aideploy.knowledge.rules.ruleset import (
    DEFAULT_TIMEOUT,
    MAX_TEXT_CHARS,
    Rule,
    RuleHit,
    RuleSet,
    extract_details,
)
from aideploy.knowledge.rules.safety import (
    MAX_PATTERN_CHARS,
    OutsidePattern,
    UnsafePatternError,
    check_pattern_safe,
    compile_outside,
)

#: the built-in rules (read from rules.toml when first used)
BUILTIN_RULES: tuple[Rule, ...]


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_RULES":
        return ruleset.BUILTIN_RULES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUILTIN_RULES",
    "DEFAULT_TIMEOUT",
    "GUIDE_PATTERNS",
    "MAX_PATTERN_CHARS",
    "MAX_TEXT_CHARS",
    "SEVERITIES",
    "ErrorPattern",
    "GuideTable",
    "OutsidePattern",
    "Rule",
    "RuleFileError",
    "RuleHit",
    "RuleSet",
    "UnsafePatternError",
    "builtin_rules",
    "check_pattern_safe",
    "compile_outside",
    "error_class_problem",
    "extract_details",
    "load_rules",
    "parse_rules",
    "severity_problem",
]
