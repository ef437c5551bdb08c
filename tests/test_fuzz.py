"""Fuzzing with a fixed budget: the configuration loader, the knowledge-base import, the
signature normalizer, the pattern compiler, the rule file parser and the command line take any
input and either accept it or refuse it with a documented error; never exit 70, never a hang.

Derandomized (the same cases on every run) with ``CI_EXAMPLES`` cases per target; the long random
run is ``benchmarks/fuzz_soak.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support import fuzz

FIXED = settings(
    max_examples=fuzz.CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FIXED
@given(fuzz.config_documents())
def test_config_documents(document: Any) -> None:
    fuzz.config_target(document)


@FIXED
@given(fuzz.text_documents())
def test_config_files(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        fuzz.config_file_target(text, Path(folder))


@FIXED
@given(fuzz.export_lines())
def test_kb_import(lines: list[str]) -> None:
    fuzz.import_target(lines)


@FIXED
@given(fuzz.error_texts())
def test_signature_normalizer(text: str) -> None:
    fuzz.signature_target(text)


@FIXED
@given(fuzz.patterns(), st.text(max_size=50))
def test_pattern_compiler(pattern: str, text: str) -> None:
    fuzz.pattern_target(pattern, text)


@FIXED
@given(fuzz.text_documents())
def test_rule_files(text: str) -> None:
    fuzz.rules_target(text)


@settings(FIXED, max_examples=max(10, fuzz.CI_EXAMPLES // 2))
@given(fuzz.cli_arguments())
@example(["learn", "export", ""])  # was exit 70: an empty file name
def test_cli_arguments(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as home:
        fuzz.cli_target(argv, Path(home))
