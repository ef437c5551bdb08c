"""The learning benchmark's simulator draws faults the way its docstring says it does."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from aideploy.knowledge.corpus import Example, load_bundled, train_examples
from aideploy.knowledge.signature import signature_of

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


@pytest.fixture(scope="module")
def learning() -> ModuleType:
    spec = importlib.util.spec_from_file_location("learning_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return [e for e in train_examples(load_bundled()) if not e.synthetic]


def test_refilling_keeps_the_numbers_that_name_the_error(learning: ModuleType) -> None:
    text = (
        "npm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padd\n"
        "Killed process 48213 (node) total-vm:2306144kB\n"
        "Process exited with status 137"
    )
    spans = learning.variable_spans(text, random.Random(1))
    refilled = [text[a:b] for a, b in spans]
    assert "48213" in refilled
    assert "404" not in refilled and "137" not in refilled
    rng = random.Random(2)
    draws = {learning._reroll(text, spans, rng) for _ in range(20)}
    assert len(draws) > 1, "the masked parts must change between draws"
    assert all("404 Not Found" in d and "status 137" in d for d in draws)


def test_every_train_record_keeps_its_signature_when_redrawn(
    learning: ModuleType, examples: list[Example]
) -> None:
    probe, rng = random.Random(3), random.Random(4)
    changed = []
    for ex in examples:
        spans = learning.variable_spans(ex.text, probe)
        sig = signature_of(ex.text)
        if any(signature_of(learning._reroll(ex.text, spans, rng)) != sig for _ in range(3)):
            changed.append(ex.id)
    assert changed == []


def test_records_with_one_signature_are_one_error(
    learning: ModuleType, examples: list[Example]
) -> None:
    faults = learning.build_faults(examples, random.Random(7))
    by_signature: dict[str, list[object]] = {}
    for f in faults:
        by_signature.setdefault(signature_of(f.example.text), []).append(f)
    shared = [fs for fs in by_signature.values() if len(fs) > 1]
    assert shared, "the corpus has texts that mask to one signature"
    for fs in shared:
        assert len({f.key for f in fs}) == 1
        assert all(f.fixes is fs[0].fixes for f in fs)  # drift moves them together too
    assert len({f.key for f in faults}) == len(by_signature)


def test_the_scenario_sets_each_share(learning: ModuleType, examples: list[Example]) -> None:
    plain = learning.Scenario(second_fix=0.0, context=0.0, drift=0.0, fix_fails=0.0)
    faults = learning.build_faults(examples, random.Random(7), plain)
    for f in faults:
        if f.key != f.example.id:
            continue  # shares the fixes of the first record with its signature
        defaults = learning._automatic(f.example.error_class)
        labelled = f.example.strategy if f.example.strategy in learning.STRATEGIES else ""
        assert list(f.fixes.values()) == [
            labelled or (defaults[0] if defaults else "manual_intervention")
        ]
    before = [dict(f.fixes) for f in faults]
    learning.drift(faults, random.Random(1), plain.drift)
    assert [f.fixes for f in faults] == before
    rng = random.Random(2)
    assert all(learning.works("x", "x", rng, plain) for _ in range(200))

    hard = learning.Scenario(second_fix=1.0, context=1.0, drift=1.0, fix_fails=1.0)
    faults = learning.build_faults(examples, random.Random(7), hard)
    assert all(len(f.fixes) == 2 for f in faults if f.key == f.example.id)
    two_defaults = [f for f in faults if len(learning._automatic(f.example.error_class)) > 1]
    assert all(
        f.fixes[f.default_step] != learning._automatic(f.example.error_class)[0]
        for f in two_defaults
        if not f.example.strategy and f.key == f.example.id
    )
    assert not any(learning.works("x", "x", rng, hard) for _ in range(200))
