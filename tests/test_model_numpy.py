"""The classifier scores with numpy what scikit-learn would, and ranking needs no scikit-learn.

Training uses scikit-learn; the fitted classifier keeps vocabularies, idf, coefficients and
intercepts as arrays and computes TF-IDF and the logistic scores itself. These tests hold that
computation to scikit-learn's on every corpus text, and check that classifying a text with a
cached classifier and an empty knowledge base never imports scikit-learn or scipy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aideploy.knowledge.classifier import (
    TextClassifier,
    _fit_estimators,
    cache_file,
    cache_key,
    char_wb_grams,
    classifier_text,
    load_cached,
    store_cached,
    word_grams_of,
)
from aideploy.knowledge.corpus import load_bundled, train_examples

ODD_TEXTS = [
    "",
    "   ",
    "a",
    "x y",
    "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt-get)",
    "tab\tseparated\r\nlines\x0b\x0cform feed\u2028line sep\u00a0nbsp",
    "Ünïcödé ERROR: café naïve \u2013 ß İstanbul ΣΊΣΥΦΟΣ",
    "<path>/f.py:12: <ip> <port> __init__ foo_bar 123 4567",
    "word " * 700,
]


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Any, Any, TextClassifier, list[str]]:
    train = train_examples(load_bundled())
    docs = [classifier_text(e.text) for e in train]
    chars, words, model = _fit_estimators(docs, [e.error_class for e in train])
    clf = TextClassifier()._set_estimators(chars, words, model)
    every = [e.text for e in load_bundled()] + ODD_TEXTS  # held-out texts too: scoring only
    return chars, words, model, clf, every


def test_ngrams_are_scikit_learns(fitted: tuple[Any, Any, Any, TextClassifier, list[str]]) -> None:
    chars, words, _, _, every = fitted
    char_analyzer, word_analyzer = chars.build_analyzer(), words.build_analyzer()
    ours = word_grams_of(words.token_pattern, *words.ngram_range)
    for text in every:
        for doc in (classifier_text(text), text):  # the raw text too: case, odd whitespace
            assert char_wb_grams(doc, *chars.ngram_range) == char_analyzer(doc)
            assert ours(doc) == word_analyzer(doc)


def test_scores_are_scikit_learns_on_every_corpus_text(
    fitted: tuple[Any, Any, Any, TextClassifier, list[str]],
) -> None:
    from scipy.sparse import hstack

    chars, words, model, clf, every = fitted
    docs = [classifier_text(t) for t in every]
    x = hstack([chars.transform(docs), words.transform(docs)], "csr")
    want_z = model.decision_function(x)
    want_p = model.predict_proba(x)
    got_z = clf.decision_function(every)
    got = clf.predict_proba(every)
    got_p = np.array([[row[c] for c in model.classes_] for row in got])
    assert clf.classes_ == list(model.classes_)
    # scikit-learn computes TF-IDF in float32 (dtype=np.float32), numpy here in float64
    np.testing.assert_allclose(got_z, want_z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_p, want_p, rtol=1e-5, atol=1e-6)
    assert (got_p.argmax(axis=1) == want_p.argmax(axis=1)).all()
    assert len(every) > 400


def test_two_classes_score_as_scikit_learn() -> None:
    from scipy.sparse import hstack

    texts = ["E: Could not get lock /var/lib/dpkg/lock", "bind() failed (98: Address in use)"]
    docs = [classifier_text(t) for t in texts]
    chars, words, model = _fit_estimators(docs, ["apt_lock", "port_in_use"])
    clf = TextClassifier()._set_estimators(chars, words, model)
    probe = [*texts, *ODD_TEXTS]
    pdocs = [classifier_text(t) for t in probe]
    x = hstack([chars.transform(pdocs), words.transform(pdocs)], "csr")
    np.testing.assert_allclose(
        clf.decision_function(probe)[:, 0], model.decision_function(x), rtol=1e-5, atol=1e-6
    )
    got = np.array([[p["apt_lock"], p["port_in_use"]] for p in clf.predict_proba(probe)])
    np.testing.assert_allclose(got, model.predict_proba(x), rtol=1e-5, atol=1e-6)


def test_the_cache_holds_arrays_and_scores_identically(
    fitted: tuple[Any, Any, Any, TextClassifier, list[str]], tmp_path: Path
) -> None:
    *_, clf, every = fitted
    directory = tmp_path / "classifier"
    store_cached(directory, "k", clf)
    # private, and no temp file left beside it
    assert cache_file(directory, "k").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in directory.iterdir()] == [cache_file(directory, "k").name]
    # plain arrays: it loads with pickling refused
    with np.load(cache_file(directory, "k"), allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    loaded = load_cached(directory, "k")
    assert loaded is not None
    assert loaded.predict_proba(every) == clf.predict_proba(every)
    # a file of another format is refused (the caller retrains)
    arrays = clf.to_arrays()
    meta = json.loads(arrays["meta"].tobytes())
    meta["format"] = 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with cache_file(directory, "k").open("wb") as fh:
        np.savez(fh, **arrays)
    assert load_cached(directory, "k") is None


def test_classify_with_a_warm_cache_imports_no_scikit_learn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = train_examples(load_bundled())
    texts, labels = [e.text for e in train], [e.error_class for e in train]
    cache = tmp_path / "cache"
    store_cached(
        cache / "classifier", cache_key(texts, labels), TextClassifier().fit(texts, labels)
    )
    probe = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from aideploy.cli.main import cli\n"
        "text = 'E: could not get lock /var/lib/dpkg/lock-frontend'\n"
        f"args = ['learn', 'classify', '--kb', {str(tmp_path / 'fresh.db')!r}]\n"
        "r = CliRunner().invoke(cli, args, input=text)\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('sklearn', 'scipy') if m in sys.modules]\n"
        "print(json.dumps({'row': json.loads(r.output), 'heavy': heavy}))\n"
    )
    env = {**os.environ, "AIDEPLOY_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    assert result["row"]["error_class"] == "apt_lock"
    assert [p.name for p in (cache / "classifier").iterdir()] == [
        cache_file(cache / "classifier", cache_key(texts, labels)).name
    ]  # read, not retrained under another key
