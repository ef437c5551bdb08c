"""Integrity checks for the labelled corpus in datasets/ (no network)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from aideploy.knowledge.classes import ERROR_CLASSES
from aideploy.knowledge.classes import STRATEGIES as CATALOGUE_STRATEGIES

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
REAL = DATASETS / "errors.jsonl"
SYNTHETIC = DATASETS / "synthetic.jsonl"

# the contract names of DESIGN.md, kept in one place
CLASSES = set(ERROR_CLASSES)
STRATEGIES = set(CATALOGUE_STRATEGIES)

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "error_class": str,
    "text": str,
    "source": str,
    "tool": str,
    "fix": (str, type(None)),
    "strategy": (str, type(None)),
    "split": str,
    "synthetic": bool,
}

MIN_REAL_PER_CLASS = 10
MIN_REAL_TEST_PER_CLASS = 3


def _load(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:  # pragma: no cover - reported as failure
                pytest.fail(f"{path.name}:{lineno} is not valid JSON: {exc}")
    return records


@pytest.fixture(scope="module")
def real() -> list[dict[str, Any]]:
    return _load(REAL)


@pytest.fixture(scope="module")
def synthetic() -> list[dict[str, Any]]:
    return _load(SYNTHETIC) if SYNTHETIC.exists() else []


def test_every_line_parses_to_an_object(real, synthetic):
    assert real, "errors.jsonl is empty"
    for rec in real + synthetic:
        assert isinstance(rec, dict)


@pytest.mark.parametrize("name", ["real", "synthetic"])
def test_required_fields_and_types(name, request):
    for rec in request.getfixturevalue(name):
        for field, typ in REQUIRED.items():
            assert field in rec, f"{rec.get('id')}: missing {field}"
            assert isinstance(rec[field], typ), f"{rec['id']}: {field} has wrong type"
        assert rec["error_class"] in CLASSES, rec["id"]
        assert rec["split"] in {"train", "test"}, rec["id"]
        assert rec["text"].strip(), rec["id"]
        assert rec["tool"].strip(), rec["id"]
        if rec["strategy"] is not None:
            assert rec["strategy"] in STRATEGIES, f"{rec['id']}: unknown strategy"


def test_real_records_are_marked_real_and_cite_a_source(real):
    for rec in real:
        assert rec["synthetic"] is False, rec["id"]
        assert re.match(r"https?://\S+$", rec["source"]), rec["id"]


def test_real_texts_are_short_excerpts(real):
    for rec in real:
        assert 1 <= len(rec["text"].splitlines()) <= 15, rec["id"]


def test_ids_are_unique_and_prefixed_by_class(real, synthetic):
    ids = [r["id"] for r in real + synthetic]
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, dupes
    for rec in real:
        assert rec["id"].startswith(rec["error_class"] + "-"), rec["id"]


def test_no_duplicate_texts(real, synthetic):
    texts = Counter(r["text"] for r in real + synthetic)
    dupes = [t[:60] for t, n in texts.items() if n > 1]
    assert not dupes, dupes


def test_every_class_has_enough_real_examples(real):
    per_class = Counter(r["error_class"] for r in real)
    missing = {c: per_class[c] for c in CLASSES if per_class[c] < MIN_REAL_PER_CLASS}
    assert not missing, missing


def test_every_class_has_real_test_examples(real):
    per_class = Counter(r["error_class"] for r in real if r["split"] == "test")
    short = {c: per_class[c] for c in CLASSES if per_class[c] < MIN_REAL_TEST_PER_CLASS}
    assert not short, short


def test_split_is_by_source(real):
    splits: dict[str, set[str]] = defaultdict(set)
    for rec in real:
        splits[rec["source"]].add(rec["split"])
    leaking = [src for src, s in splits.items() if len(s) > 1]
    assert not leaking, leaking


def test_synthetic_records_derive_from_train_only(real, synthetic):
    by_id = {r["id"]: r for r in real}
    test_sources = {r["source"] for r in real if r["split"] == "test"}
    for rec in synthetic:
        assert rec["synthetic"] is True, rec["id"]
        assert rec["split"] == "train", rec["id"]
        parent = by_id.get(rec.get("derived_from", ""))
        assert parent is not None, f"{rec['id']}: derived_from is not a real id"
        assert parent["split"] == "train", f"{rec['id']}: derived from a test record"
        assert parent["error_class"] == rec["error_class"], rec["id"]
        assert rec["source"] not in test_sources, rec["id"]
