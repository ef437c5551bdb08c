"""The rule set: built-in rules plus custom patterns, every hit with its weight and details.

Built-in rules come from ``rules.toml`` (see :mod:`aideploy.knowledge.rules.loader`); they are
compiled once with the ``regex`` module, searched with a timeout, and only in texts that hold one
of their literals (:func:`_needles`; every rule's literals are found in one RE2 pass over the
text, :class:`~aideploy.knowledge.rules.safety.LiteralSet`), and without the top-level
alternatives whose literals the text lacks (:func:`_split`, :func:`_leftmost`; each alternative is
compiled alone with the first match). Custom patterns (configuration, knowledge base) are
compiled and matched with RE2 (:mod:`aideploy.knowledge.rules.safety`): linear time, no timeout
needed.
"""

from __future__ import annotations

import re
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import regex

from aideploy.core.errors import ConfigError
from aideploy.knowledge.classes import strategies_for
from aideploy.knowledge.rules.loader import RULE_FLAGS, builtin_rules
from aideploy.knowledge.rules.patterns import ErrorPattern
from aideploy.knowledge.rules.safety import LiteralSet, compile_outside

MAX_TEXT_CHARS = 64 * 1024
DEFAULT_TIMEOUT = 0.05  # seconds per pattern search (built-in rules)


@dataclass(frozen=True)
class Rule:
    name: str
    error_class: str
    pattern: str
    strategies: tuple[str, ...]
    weight: float
    flags: int = RULE_FLAGS
    custom: bool = False
    description: str = ""

    def compiled(self) -> Any:
        """A built-in rule: the ``regex`` pattern; a custom one: RE2 (an OutsidePattern)."""
        if self.custom:
            return compile_outside(self.pattern, ignore_case=bool(self.flags & regex.IGNORECASE))
        return regex.compile(self.pattern, self.flags)


@dataclass(frozen=True)
class RuleHit:
    rule: str
    error_class: str
    strategies: tuple[str, ...]
    weight: float
    matched: str
    details: Mapping[str, str] = field(default_factory=dict)
    custom: bool = False


#: the built-in rules, in the order of rules.toml; read when first used (module __getattr__), so
#: that importing the rules (as every CLI command does) costs no file read and no compiling
BUILTIN_RULES: tuple[Rule, ...]


@cache
@cache
def _builtin() -> tuple[Rule, ...]:
    return tuple(
        Rule(r.name, r.error_class, r.pattern, r.strategies, r.weight) for r in builtin_rules()
    )


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_RULES":
        return _builtin()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# details found anywhere in the text, whatever rule matched; each pattern searched only in texts
# holding one of its literals (case-folded), when it has any
_DETAIL_PATTERNS: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("port", regex.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\]|localhost|\*):(\d{2,5})\b"), ()),
    ("port", regex.compile(r"(?i)\bport (\d{2,5})\b"), ("port ",)),
    ("service", regex.compile(r"(?i)\b([\w@-]+(?:\.[\w@-]+)*)\.service\b"), (".service",)),
    ("command", regex.compile(r"(?m)(?:^|: )([\w.+-]+): (?:command )?not found"), ("not found",)),
    (
        "package",
        regex.compile(r"(?i)Unable to locate package (\S+)"),
        ("unable to locate package ",),
    ),
    ("path", regex.compile(r"(?<![\w.])(/(?:[\w.@+-]+/)*[\w.@+-]+)"), ("/",)),
    (
        "host",
        regex.compile(r"(?i)(?:resolve host:?|resolving|hostname) '?([\w-]+(?:\.[\w-]+)+)"),
        ("resolv", "hostname"),
    ),
)


def extract_details(text: str, keys: Collection[str] | None = None) -> dict[str, str]:
    """Generic details (first port, service, missing command, package, path, host); only those
    named in ``keys`` when given."""
    out: dict[str, str] = {}
    folded = text.casefold()
    for key, pattern, literals in _DETAIL_PATTERNS:
        if key in out or (keys is not None and key not in keys):
            continue
        if literals and not any(n in folded for n in literals):
            continue
        try:
            m = pattern.search(text, timeout=DEFAULT_TIMEOUT)
        except TimeoutError:
            continue
        if m:
            out[key] = m.group(1)
    return out


# --- the literal prefilter (built-in rules only) ----------------------------------------------

_MIN_NEEDLE = 3
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _op(node: Any) -> str:
    return str(node[0])


_GROUP_NAME = re.compile(r"\(\?P<\w+>")


def _needles(pattern: str) -> tuple[str, ...] | None:
    """Case-folded ASCII literals of which at least one occurs in any text ``pattern`` matches
    (ignoring case), or None when no such set is found. A cheap test that skips most rules."""
    n = iter(range(10_000))
    try:  # group names are renamed only for parsing: the rules reuse names across branches
        parsed = sre_parse.parse(_GROUP_NAME.sub(lambda _: f"(?P<g{next(n)}>", pattern))
    except (re.error, RecursionError, OverflowError):
        return None
    found = _required(list(parsed))
    if not found:
        return None
    # a literal that holds a shorter one of the set adds nothing: the shorter one is there too
    return tuple(sorted(n for n in found if not any(m != n and m in n for m in found)))


def _required(seq: list[Any]) -> set[str] | None:
    """Alternatives (any one must occur) required by a sequence; the longest-worded choice
    (of equals, the one with the fewest alternatives)."""
    best: set[str] | None = None

    def consider(alts: set[str] | None) -> None:
        nonlocal best
        if alts and (
            best is None or (min(map(len, alts)), -len(alts)) > (min(map(len, best)), -len(best))
        ):
            best = alts

    run: list[str] = []
    for node in [*seq, None]:
        op = _op(node) if node is not None else ""
        if op == "LITERAL" and node is not None and node[1] < 128:
            run.append(chr(node[1]).casefold())
            continue
        if len(run) >= _MIN_NEEDLE:
            consider({"".join(run)})
        run = []
        if node is None:
            break
        av = node[1]
        if op == "SUBPATTERN":
            consider(_required(list(av[-1])))
        elif op in _REPEATS and av[0] >= 1:
            consider(_required(list(av[2])))
        elif op == "BRANCH":
            alts: set[str] = set()
            for branch in av[1]:
                got = _required(list(branch))
                if not got:
                    alts = set()
                    break
                alts |= got
            consider(alts)
    return best


_GLOBAL_FLAGS = re.compile(r"\(\?[a-zA-Z]+\)")


def _branches(pattern: str) -> tuple[str, ...] | None:
    """The top-level alternatives of ``pattern`` as source text, or None when it has only one
    or may not be split (a global inline flag, which would then apply to one branch only)."""
    parts: list[str] = []
    depth = start = i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":  # a literal ] first in a set
                i += 1
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    if len(parts) < 2 or depth != 0 or in_class or _GLOBAL_FLAGS.search(pattern):
        return None
    return tuple(parts)


def _split(rule: Rule) -> tuple[tuple[str, ...], tuple[tuple[str, ...] | None, ...]] | None:
    """A built-in rule's top-level alternatives and each one's literals (None: it has none),
    when some of them have literals: a text without any of a branch's literals cannot match
    that branch, so the rule is searched in it as its other branches only (see
    :meth:`RuleSet.match`)."""
    branches = None if rule.custom else _branches(rule.pattern)
    if branches is None:
        return None
    needles = tuple(_needles(b) for b in branches)
    return (branches, needles) if any(n is not None for n in needles) else None


def _leftmost(patterns: Sequence[Any], text: str, timeout: float) -> Any:
    """The match of the alternation of ``patterns`` (in that order) in ``text``: the leftmost of
    their matches, the first pattern's of those starting at the same place."""
    best = None
    for p in patterns:
        m = p.search(text, timeout=timeout)
        if m is not None and (best is None or m.start() < best.start()):
            best = m
    return best


@dataclass(frozen=True)
class _Prefilter:
    """The literals of a rule set's built-in rules as one :class:`LiteralSet`: ``rules_of[k]``,
    the rules the k-th literal lets through; ``always``, the rules searched in every text."""

    needles: list[tuple[str, ...] | None]  # what it was made from
    size: int  # the number of rules it was made for
    literals: LiteralSet
    rules_of: list[tuple[int, ...]]
    always: tuple[int, ...]
    # rule -> each of its top-level branches compiled alone, with the literals (indices) one of
    # which it needs (None: no literal); only for the rules _split divides
    branches: dict[int, tuple[tuple[Any, tuple[int, ...] | None], ...]]


class RuleSet:
    """The compiled rules: built-in ones plus custom patterns; every hit with its details."""

    def __init__(
        self,
        extra: Iterable[ErrorPattern] = (),
        *,
        builtin: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        self.rules: list[Rule] = list(_builtin()) if builtin else []
        self._compiled: list[Any] = [r.compiled() for r in self.rules]
        # built-in rules are only searched in texts that hold one of their literals
        self._needles: list[tuple[str, ...] | None] = [_needles(r.pattern) for r in self.rules]
        # the literals of every rule in one set, found in a text in one pass (see _prefilter)
        self._literals: _Prefilter | None = None
        self._splits = [_split(r) for r in self.rules]
        self.timeouts = 0
        for p in extra:
            self.add(p)

    def add(self, pattern: ErrorPattern) -> Rule:
        """Validate and add a custom pattern (raises ConfigError / UnsafePatternError)."""
        pattern.validate()
        strategies = (pattern.recovery, *strategies_for(pattern.error_class))
        rule = Rule(
            name=pattern.name,
            error_class=pattern.error_class,
            pattern=pattern.pattern,
            strategies=tuple(dict.fromkeys(strategies)),
            weight=0.99,
            flags=0,
            custom=True,
            description=pattern.description,
        )
        self.rules.append(rule)
        self._compiled.append(rule.compiled())
        self._needles.append(None)
        self._splits.append(None)
        return rule

    @classmethod
    def from_kb(cls, kb: object, **kwargs: Any) -> RuleSet:
        """Built-in rules plus the KB's trusted patterns; rows RE2 cannot run are skipped."""
        rules = cls(**kwargs)
        rows_of = getattr(kb, "patterns", None)
        if rows_of is None:
            return rules
        for row in rows_of(trusted_only=True):
            try:
                rules.add(ErrorPattern.from_row(row))
            except ConfigError:
                continue
        return rules

    def match(self, text: str) -> list[RuleHit]:
        """Every rule that matches ``text``, strongest first."""
        if len(text) > MAX_TEXT_CHARS:
            text = text[-MAX_TEXT_CHARS:]
        hits: list[RuleHit] = []
        folded = text.casefold()
        prefilter = self._prefilter()
        wanted = set(prefilter.always)
        rules_of = prefilter.rules_of
        present = prefilter.literals.present(folded)
        for k in present:
            wanted.update(rules_of[k])
        branches, seen = prefilter.branches, set(present)
        for i in sorted(wanted):
            rule = self.rules[i]
            try:
                m = self._search(i, text, branches.get(i), seen)
            except TimeoutError:
                self.timeouts += 1
                continue
            if m is None:
                continue
            details = {k: v for k, v in m.groupdict().items() if v}
            hits.append(
                RuleHit(
                    rule=rule.name,
                    error_class=rule.error_class,
                    strategies=rule.strategies,
                    weight=rule.weight,
                    matched=m.group(0)[:200],
                    details=details,
                    custom=rule.custom,
                )
            )
        hits.sort(key=lambda h: -h.weight)
        return hits

    def _prefilter(self) -> _Prefilter:
        """The literals of ``_needles`` (and of the split rules' branches) as one set, and the
        rules each one lets through; made when first needed and again when the rules or their
        literals change."""
        needles = self._needles
        made = self._literals
        if made is not None and made.needles is needles and made.size == len(self.rules):
            return made
        index: dict[str, list[int]] = {}
        always = []
        for i in range(len(self.rules)):
            need = needles[i] if i < len(needles) else None
            if need is None:
                always.append(i)
                continue
            for n in need:
                index.setdefault(n, []).append(i)
        branches: dict[int, tuple[tuple[Any, tuple[int, ...] | None], ...]] = {}
        for i, split in enumerate(self._splits):
            if split is None or i >= len(needles) or needles[i] is None:
                continue  # searched whole (a rule without literals: in every text)
            for need in split[1]:
                for n in need or ():
                    index.setdefault(n, [])
        position = {n: k for k, n in enumerate(index)}
        for i, split in enumerate(self._splits):
            if split is None or i >= len(needles) or needles[i] is None:
                continue
            try:
                alone = [regex.compile(b, self.rules[i].flags) for b in split[0]]
            except (regex.error, OverflowError, RecursionError):
                continue  # searched whole
            branches[i] = tuple(
                (c, None if need is None else tuple(position[n] for n in need))
                for c, need in zip(alone, split[1], strict=True)
            )
        self._literals = _Prefilter(
            needles,
            len(self.rules),
            LiteralSet(list(index)),
            [tuple(rules) for rules in index.values()],
            tuple(always),
            branches,
        )
        return self._literals

    def _search(
        self,
        i: int,
        text: str,
        branches: tuple[tuple[Any, tuple[int, ...] | None], ...] | None,
        present: set[int],
    ) -> Any:
        """Rule ``i``'s match in ``text``: a custom rule with RE2; a built-in one with a timeout
        per search, and only as the branches the text's literals (``present``) leave possible
        when that is not all of them (see :func:`_leftmost`)."""
        compiled = self._compiled[i]
        if self.rules[i].custom:  # RE2: linear in the text, no timeout needed
            return compiled.search(text)
        if branches is not None:
            keep = [c for c, need in branches if need is None or not present.isdisjoint(need)]
            if len(keep) < len(branches):
                return _leftmost(keep, text, self.timeout)
        return compiled.search(text, timeout=self.timeout)

    def class_scores(self, hits: Iterable[RuleHit]) -> dict[str, float]:
        """Per class, the strongest hit's weight."""
        scores: dict[str, float] = {}
        for h in hits:
            scores[h.error_class] = max(scores.get(h.error_class, 0.0), h.weight)
        return scores

    def details(
        self, text: str, hits: Iterable[RuleHit] = (), keys: Collection[str] | None = None
    ) -> dict[str, str]:
        """Details from the strongest hits' named groups, completed by the generic extractors
        (only the details named in ``keys``, when given)."""
        out: dict[str, str] = {}
        for h in hits:
            for k, v in h.details.items():
                if keys is None or k in keys:
                    out.setdefault(k, v)
        for k, v in extract_details(text[-MAX_TEXT_CHARS:], keys).items():
            out.setdefault(k, v)
        return out
