"""Regular expressions from outside: compiled and matched with RE2, in time linear in the text.

Patterns written by users (``custom_patterns`` in the configuration, ``aideploy learn patterns
add``) or brought in by an import are compiled with Google's RE2 (``google-re2``). RE2 has no
backtracking, so no pattern can make a search take more than time proportional to the text:
``(a+)+$`` is accepted and runs on a 64 KiB text as fast as any other. What RE2 cannot express
(backreferences, lookahead and lookbehind, atomic groups and possessive quantifiers,
conditionals) is refused with a message that says so.

Semantics, against Python's ``re`` for the features both have: the same syntax for groups,
named groups ``(?P<name>...)``, classes, repeats, inline flags and anchors; leftmost-first
alternation, so the same match. ``$`` without ``(?m)`` also matches before a final newline, as in
Python (:meth:`OutsidePattern.search` searches once more without that newline). ``\\d``, ``\\w``,
``\\s`` and ``\\b`` are ASCII in RE2 (Unicode in Python): the same on ASCII text. ``\\Z`` is spelt
``\\z`` in RE2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from aideploy.core.errors import ConfigError

MAX_PATTERN_CHARS = 1000


class UnsafePatternError(ConfigError):
    """A pattern from outside is too long, does not compile, or needs a feature RE2 lacks."""


class PatternMatch(Protocol):
    """The part of a match object the rules use (``re.Match``, ``regex.Match`` and RE2's)."""

    def group(self, group: int = 0, /) -> Any: ...

    def groupdict(self) -> dict[str, Any]: ...


@cache
def _re2() -> Any:
    """The ``re2`` module, imported with the first pattern from outside (not at CLI start-up)."""
    import re2

    return re2


def _options(*, ignore_case: bool) -> Any:
    options = _re2().Options()
    options.log_errors = False  # RE2 would print its compile errors on stderr as well
    options.case_sensitive = not ignore_case
    return options


# RE2's memory for the automaton of a LiteralSet, allocated as the states are met; a set of
# literals has at most one state per prefix of a literal, far below this
LITERAL_SET_MAX_MEM = 64 << 20


class LiteralSet:
    """Which of a fixed set of ASCII literals occur in a text, found in one pass over it (an RE2
    set of the escaped literals) rather than one search per literal."""

    __slots__ = ("_set",)

    def __init__(self, literals: Sequence[str]) -> None:
        re2 = _re2()
        options = re2.Options()
        options.log_errors = False
        options.max_mem = LITERAL_SET_MAX_MEM
        self._set = re2.Set.SearchSet(options)
        for literal in literals:
            if not literal.isascii():
                raise ValueError(f"not an ASCII literal: {literal!r}")
            self._set.Add(re2.escape(literal))
        self._set.Compile()

    def present(self, text: str) -> list[int]:
        """The indices of the literals found in ``text`` (case-sensitive), in any order."""
        found: list[int] | None = self._set.Match(text.encode("utf-8", "surrogatepass"))
        return found or []


class OutsidePattern:
    """A pattern from outside, compiled with RE2; :meth:`search` behaves like ``re.search``."""

    __slots__ = ("_compiled", "_dollar", "pattern")

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise UnsafePatternError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
        self.pattern = pattern
        scan = _scan(pattern)
        re2 = _re2()
        try:
            self._compiled = re2.compile(pattern, _options(ignore_case=ignore_case))
        except re2.error as exc:
            raise UnsafePatternError(_refusal(scan.features, _message(exc))) from None
        repeated = sorted({n for n in scan.names if scan.names.count(n) > 1})
        if repeated:
            raise UnsafePatternError(
                f"pattern names two groups {repeated[0]!r}: give each group its own name"
            )
        # Python's $ also matches before a final newline, RE2's only at the end: search again
        # without that newline (not when the pattern also says \z, the very end)
        self._dollar = scan.dollar and not scan.very_end

    def search(self, text: str) -> PatternMatch | None:
        """The first match in ``text``, or None (``$`` may match before a final newline)."""
        try:
            found = self._compiled.search(text)
        except UnicodeEncodeError:  # lone surrogates: RE2 reads UTF-8; one '?' each keeps offsets
            text = text.encode("utf-8", "replace").decode("utf-8")
            found = self._compiled.search(text)
        if found is None and self._dollar and text.endswith("\n"):
            found = self._compiled.search(text[:-1])
        return found  # type: ignore[no-any-return]


def compile_outside(pattern: str, *, ignore_case: bool = False) -> OutsidePattern:
    """Compile a pattern from outside with RE2; raises UnsafePatternError if it cannot be."""
    return OutsidePattern(pattern, ignore_case=ignore_case)


def check_pattern_safe(pattern: str) -> None:
    """Raise UnsafePatternError unless ``pattern`` can be matched in linear time (with RE2).

    Refused: longer than MAX_PATTERN_CHARS; not a valid pattern; a feature RE2 cannot express
    (backreferences, lookarounds, atomic groups, possessive quantifiers, conditionals); a group
    name used twice. Anything accepted is matched by RE2, in time linear in the text.
    """
    compile_outside(pattern)


def _message(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


_FEATURES = {
    "backreference": "a backreference (\\1, (?P=name))",
    "lookaround": "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
    "atomic": "an atomic group or a possessive quantifier ((?>...), a*+, a++, a?+)",
    "conditional": "a conditional group ((?(1)...|...))",
    "comment": "a comment group ((?#...))",
}


def _refusal(features: set[str], message: str) -> str:
    if not features:
        return f"pattern does not compile: {message}"
    if features == {"end"}:
        return f"pattern uses \\Z, which RE2 spells \\z (the very end of the text): {message}"
    what = " and ".join(_FEATURES[f] for f in sorted(features - {"end"}))
    return (
        f"pattern uses {what}, which RE2 cannot express: custom patterns are matched with RE2, "
        f"in time linear in the text ({message})"
    )


@dataclass
class _Scan:
    """What a plain left-to-right reading of a pattern finds (for messages and ``$``)."""

    features: set[str] = field(default_factory=set)  # keys of _FEATURES
    names: list[str] = field(default_factory=list)  # group names, in order
    dollar: bool = False  # a $ outside a class
    very_end: bool = False  # \z


def _scan(p: str) -> _Scan:
    out = _Scan()
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "\\" and i + 1 < n:
            nxt = p[i + 1]
            if nxt == "Q":  # \Q...\E: literal text
                end = p.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            if nxt in "123456789":
                out.features.add("backreference")
            elif nxt == "Z":
                out.features.add("end")
            elif nxt == "z":
                out.very_end = True
            i += 2
            continue
        if c == "[":
            i = _skip_class(p, i)
            continue
        if c == "$":
            out.dollar = True
        elif c == "(" and p.startswith("?", i + 1):
            rest = p[i + 2 : i + 5]
            if rest.startswith(("=", "!", "<=", "<!")):
                out.features.add("lookaround")
            elif rest.startswith("P="):
                out.features.add("backreference")
            elif rest.startswith(">"):
                out.features.add("atomic")
            elif rest.startswith("("):
                out.features.add("conditional")
            elif rest.startswith("#"):
                out.features.add("comment")
            elif rest.startswith(("P<", "<")):
                start = i + (4 if rest.startswith("P<") else 3)
                end = p.find(">", start)
                if end > 0:
                    out.names.append(p[start:end])
            i += 2
            continue
        elif c in "*+?}" and p.startswith("+", i + 1):
            out.features.add("atomic")
            i += 2
            continue
        i += 1
    return out


def _skip_class(p: str, i: int) -> int:
    """The index just past the character class opened at ``p[i] == '['``."""
    j = i + 1
    if p.startswith("^", j):
        j += 1
    if p.startswith("]", j):  # a ']' first is a literal
        j += 1
    while j < len(p):
        if p[j] == "\\":
            j += 2
            continue
        if p.startswith("[:", j):  # [[:alpha:]]
            end = p.find(":]", j + 2)
            if end > 0:
                j = end + 2
                continue
        if p[j] == "]":
            return j + 1
        j += 1
    return j
