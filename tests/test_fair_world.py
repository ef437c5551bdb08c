"""The fair learning world draws what its docstring says, and the ranker learns in it."""

from __future__ import annotations

import importlib.util
import random
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

from aideploy.knowledge.classes import strategies_for
from aideploy.knowledge.signature import signature_of

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def fw() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fair_world", BENCHMARKS / "fair_world.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_causes_are_the_held_out_texts_with_fixes_that_are_not_the_class_default(
    fw: ModuleType,
) -> None:
    pool = fw.heldout_pool()
    assert pool and all(e.split == "test" for e in pool)
    causes = fw.build_causes(pool, random.Random(1), fw.DEFAULT_WORLD)
    assert len(causes) == len(pool)
    fixes = [(c.example.error_class, f) for c in causes for f in c.fixes.values()]
    assert all(f in fw.options(cls) for cls, f in fixes)
    not_default = [f != strategies_for(cls)[0] for cls, f in fixes]
    assert 0.3 <= statistics.mean(not_default) <= 0.8
    assert any(len(c.fixes) == 2 and len(set(c.fixes.values())) == 2 for c in causes)


def test_recurrences_are_variants(fw: ModuleType) -> None:
    text = (
        "npm ERR! code EACCES\nnpm ERR! path /home/deploy/site/node_modules/.bin/webpack\n"
        "npm ERR! Error: EACCES: permission denied, open '/home/deploy/site/package-lock.json'\n"
        "npm ERR! cannot run in wd app@1.2.3 (wd=/srv/app)"
    )
    rng = random.Random(3)
    drawn = [fw.variant(text, rng) for _ in range(30)]
    assert len(set(drawn)) > 20
    assert all("EACCES" in d and "package-lock.json" in d for d in drawn)
    sigs = {signature_of(d) for d in drawn}
    assert len(sigs) > 1, "some variants change the signature"


def test_drift_changes_the_fix(fw: ModuleType) -> None:
    causes = fw.build_causes(fw.heldout_pool(), random.Random(1), fw.DEFAULT_WORLD)
    before = {c.key: dict(c.fixes) for c in causes}
    changed = fw.drift(causes, random.Random(2), 0.2)
    assert changed
    for pair in changed:
        key, step = pair.split("|")
        now = next(c for c in causes if c.key == key).fixes[step]
        assert now != before[key][step]


def test_the_ranker_learns_better_than_remembering_signatures(fw: ModuleType) -> None:
    tracks = fw.simulate(400, seed=3)
    mean = fw.summary(tracks)
    assert mean["oracle"] < mean["ranker"]
    assert mean["ranker"] < mean["memory"] < mean["random"] + 1.0
    assert mean["ranker"] < mean["rules"]
    # remembering by cause (variants recognised, causes never confused) beats remembering
    # signatures: the world's variants do change signatures
    assert mean["cause memory"] < mean["memory"]
    # 200 failures after the warm-up: first encounters still weigh (the benchmark runs 1000)
    assert mean["ranker"] <= 1.4 * mean["oracle"], mean
