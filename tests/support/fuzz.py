"""Fuzz targets: what outside input reaches, with Hypothesis strategies that draw it.

Each target takes one drawn input and fails (raises AssertionError or lets an unexpected
exception through) when the code under test does something other than accept the input or
refuse it with one of aideploy's own errors (:class:`~aideploy.core.errors.AideployError`, whose
exit code is documented): never an internal error (exit 70), never a hang.

``tests/test_fuzz.py`` runs every target derandomized with a small fixed budget
(:data:`CI_EXAMPLES` cases); ``benchmarks/fuzz_soak.py`` runs them with a large random budget and
reports cases tried and failures found.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from aideploy.core.errors import AideployError

#: cases per target in the test suite
CI_EXAMPLES = int(os.environ.get("AIDEPLOY_FUZZ_EXAMPLES", "40"))
#: seconds one case may take before it counts as a hang
HANG_SECONDS = 10.0

# -- strategies ----------------------------------------------------------------------------------

_KEYS = [
    "version",
    "ssh",
    "deployment",
    "server_profiles",
    "custom_patterns",
    "hostname",
    "port",
    "username",
    "key_file",
    "timeout",
    "connect_retries",
    "keepalive",
    "session_mode",
    "known_hosts",
    "retry_delay",
    "max_retries",
    "command_timeout",
    "auto_approve",
    "name",
    "pattern",
    "error_class",
    "recovery",
    "severity",
    "retry_count",
    "kb",
    "notifications",
]
_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "1.0", "unknown", "network", "(a+)+$", "\x00", "a" * 300, "../../etc/passwd", "${HOME}"]
)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
)
_key = st.sampled_from(_KEYS) | _text


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """JSON-shaped values whose keys are mostly the configuration's own names."""
    return st.recursive(
        _scalar,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_key, inner, max_size=5),
        max_leaves=max_leaves,
    )


def config_documents() -> st.SearchStrategy[Any]:
    """A configuration document: a valid-looking skeleton with drawn values, or anything."""
    profile = st.fixed_dictionaries(
        {},
        optional={
            "hostname": _text,
            "port": _scalar,
            "username": _text,
            "key_file": _text,
            "session_mode": _scalar,
        },
    )
    skeleton = st.fixed_dictionaries(
        {},
        optional={
            "version": st.sampled_from(["1.0", "2", ""]) | _scalar,
            "ssh": st.dictionaries(st.sampled_from(_KEYS), _scalar | json_values(4), max_size=4),
            "deployment": st.dictionaries(
                st.sampled_from(_KEYS), _scalar | json_values(4), max_size=4
            ),
            "server_profiles": st.dictionaries(_text, profile | json_values(4), max_size=3),
            "custom_patterns": st.lists(
                st.dictionaries(st.sampled_from(_KEYS), _scalar, max_size=6), max_size=3
            ),
        },
    )
    return skeleton | json_values()


def text_documents() -> st.SearchStrategy[str]:
    """Text a user may hand over as a file: JSON-ish, TOML-ish or noise."""
    return (
        st.text(max_size=400)
        | config_documents().map(lambda d: json.dumps(d, default=str))
        | st.text(alphabet=string.printable, max_size=400)
    )


#: export records: a valid header and records, fields drawn
_HEADER = {"format": "aideploy-kb", "version": 1}


def export_lines() -> st.SearchStrategy[list[str]]:
    record = st.fixed_dictionaries(
        {"type": st.sampled_from(["attempt", "signature", "strategy", "pattern", "deployment"])},
        optional={
            "key": _text,
            "signature": _text,
            "error_class": st.sampled_from(["network", "unknown", "permission"]) | _text,
            "strategy": st.sampled_from(["retry_with_backoff", "apt_update"]) | _text,
            "outcome": st.sampled_from(["recovered", "failed", "skipped", "pending"]) | _text,
            "step": _text,
            "context": json_values(6),
            "duration": _scalar,
            "decided_by": st.sampled_from(["rule", "ranker"]) | _text,
            "at": st.sampled_from(["2026-01-01T00:00:00+00:00", "yesterday"]) | _text,
            "weight": _scalar,
            "regex": st.sampled_from(["E: (?P<x>.+)", "(a+)+$", "(?<=x)y"]) | _text,
            "name": _text,
            "risk": st.sampled_from(["low", "high"]) | _text,
            "commands": json_values(4),
        },
    )
    header = st.just(json.dumps(_HEADER)) | json_values(6).map(json.dumps) | st.text(max_size=60)
    body = st.lists(record.map(json.dumps) | st.text(max_size=80), max_size=6)
    return st.tuples(header, body).map(lambda hb: [hb[0], *hb[1]])


def error_texts() -> st.SearchStrategy[str]:
    """Output a failing command may print."""
    fragments = st.sampled_from(
        [
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt)",
            'Traceback (most recent call last):\n  File "x.py", line 3, in <module>\n',
            "npm ERR! code EACCES\nnpm ERR! path /usr/lib/node_modules",
            "password=hunter2 token: abcdef0123456789abcdef",
            "\x1b[31mERROR\x1b[0m 2026-01-01 12:00:00 connection refused 10.0.0.1:5432",
            "\r\n\t\x00\u202e",
            "x" * 5000,
        ]
    )
    return st.lists(fragments | st.text(max_size=200), max_size=6).map("\n".join)


def patterns() -> st.SearchStrategy[str]:
    pieces = st.sampled_from(
        [
            *("(", ")", "(?P<tool>", "(?<=", "\\1", "+", "*", "?", "{2,}", "[", "]", "a", "."),
            *("|", "(?i)", "\\d", "\\", "$", "^", "(?>", "++", "(?(1)a|b)", "\\p{L}", "{99999}"),
        ]
    )
    return st.lists(pieces, max_size=20).map("".join) | st.text(max_size=60)


_SAFE_COMMANDS = [
    ["status"],
    ["list"],
    ["logs"],
    ["config", "validate"],
    ["config", "docs"],
    ["learn", "report"],
    ["learn", "strategies"],
    ["learn", "export"],
    ["learn", "import"],
    ["learn", "trust"],
    ["learn", "classify"],
    ["learn", "explain"],
    ["learn", "patterns"],
    ["audit", "verify"],
    ["audit", "show"],
    ["resume"],
    ["abandon"],
    ["unlock"],
    [],
]
_OPTIONS = [
    "--json",
    "--format",
    "--limit",
    "--kb",
    "--help",
    "--plain",
    "--config",
    "--output",
    "--weight",
    "--force",
    "-n",
    "--",
    "-",
]


def cli_arguments() -> st.SearchStrategy[list[str]]:
    arg = st.sampled_from(_OPTIONS) | _text.filter(lambda t: "\x00" not in t)
    return st.tuples(st.sampled_from(_SAFE_COMMANDS), st.lists(arg, max_size=5)).map(
        lambda ca: [*ca[0], *ca[1]]
    )


# -- targets -------------------------------------------------------------------------------------


@contextlib.contextmanager
def bounded(what: str) -> Iterator[None]:
    """Fail a case that takes longer than :data:`HANG_SECONDS` (measured, not interrupted)."""
    started = time.monotonic()
    yield
    spent = time.monotonic() - started
    assert spent < HANG_SECONDS, f"{what} took {spent:.1f}s"


def _refused_or_accepted(call: Callable[[], object], what: str) -> None:
    with bounded(what):
        try:
            call()
        except AideployError as exc:
            assert str(exc).strip(), f"{what}: an error without a message"


def config_target(document: Any) -> None:
    from aideploy.services.config import parse_config

    _refused_or_accepted(lambda: parse_config(document), "parse_config")


def config_file_target(text: str, folder: Path) -> None:
    from aideploy.services.config import load_config

    path = folder / "fuzz-config.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _refused_or_accepted(lambda: load_config(path), "load_config")


def import_target(lines: list[str]) -> None:
    from aideploy.knowledge.exchange import load

    text = "\n".join(lines) + "\n"
    _refused_or_accepted(lambda: load.read(io.StringIO(text)), "KB import")


def signature_target(text: str) -> None:
    from aideploy.knowledge.signature import signature_of
    from aideploy.knowledge.store import normalize_signature

    with bounded("signature"):
        signature = normalize_signature(text)
    assert isinstance(signature, str) and signature
    assert "hunter2" not in signature  # redacted
    assert signature_of(text) == signature_of(text)  # deterministic


def pattern_target(pattern: str, text: str) -> None:
    from aideploy.knowledge.rules.safety import check_pattern_safe, compile_outside

    with bounded("pattern"):
        try:
            check_pattern_safe(pattern)
        except AideployError as exc:
            assert str(exc).strip()
            return
        compiled = compile_outside(pattern)
        compiled.search(text * 50)  # linear time: RE2


def rules_target(text: str) -> None:
    from aideploy.knowledge.rules.loader import parse_rules

    _refused_or_accepted(lambda: parse_rules(text), "parse_rules")


@dataclass(frozen=True)
class CliCase:
    code: int
    stderr: str


def cli_target(argv: list[str], home: Path) -> CliCase:
    """Runs ``aideploy ARGV`` in-process (its own error mapping included); the exit code and
    standard error. Fails on exit 70 or a traceback."""
    from click.testing import CliRunner

    from aideploy.cli.main import main

    runner = CliRunner()
    env = {"AIDEPLOY_HOME": str(home), "NO_COLOR": "1", "AIDEPLOY_KB": str(home / "kb.sqlite")}
    code = 0
    # the drawn arguments include relative paths such as ../../etc/passwd: run from deep inside
    # the case's own directory so that they resolve there, never against the checkout or /
    workdir = home.joinpath("cwd", *"abcdefgh")
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.chdir(workdir),
        bounded(f"aideploy {argv}"),
        runner.isolation(input="", env=env) as streams,
    ):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        err = streams[1].getvalue().decode(errors="replace")
    assert code != 70, f"aideploy {argv}: internal error\n{err}"
    assert "Traceback" not in err, f"aideploy {argv}:\n{err}"
    return CliCase(code, err)
