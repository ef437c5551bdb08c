"""Training without scikit-learn: the same features and objective as scikit-learn's
TfidfVectorizer + LogisticRegression, solved in numpy/scipy, gives the same classifier."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from aideploy.knowledge.classifier import TextClassifier, _fit_estimators, classifier_text
from aideploy.knowledge.corpus import load_bundled, train_examples


def test_training_matches_scikit_learns_fit() -> None:
    train = train_examples(load_bundled())
    texts, labels = [e.text for e in train], [e.error_class for e in train]
    ours = TextClassifier().fit(texts, labels)
    chars, words, model = _fit_estimators([classifier_text(t) for t in texts], labels)
    theirs = TextClassifier()._set_estimators(chars, words, model)
    every = [e.text for e in load_bundled()]  # held-out texts too: scoring only
    assert ours.classes_ == theirs.classes_
    assert ours._blocks[0].terms == theirs._blocks[0].terms  # the same n-grams ...
    np.testing.assert_allclose(ours._blocks[0].idf, theirs._blocks[0].idf, rtol=1e-6)
    p_ours = np.array([[row[c] for c in ours.classes_] for row in ours.predict_proba(every)])
    p_theirs = np.array([[row[c] for c in ours.classes_] for row in theirs.predict_proba(every)])
    agree = (p_ours.argmax(axis=1) == p_theirs.argmax(axis=1)).mean()
    assert agree >= 0.99, agree  # ... and the same optimum, up to the solvers' tolerance
    assert np.abs(p_ours - p_theirs).max() < 0.05


def test_two_classes_train_to_one_logit() -> None:
    texts = ["E: Could not get lock /var/lib/dpkg/lock", "bind() failed (98: Address in use)"]
    clf = TextClassifier().fit(texts * 2, ["apt_lock", "port_in_use"] * 2)
    assert clf.decision_function(texts).shape == (2, 1)
    assert [max(p, key=p.__getitem__) for p in clf.predict_proba(texts)] == [
        "apt_lock",
        "port_in_use",
    ]


def test_training_imports_no_scikit_learn() -> None:
    code = (
        "import sys\n"
        "from aideploy.knowledge.classifier import TextClassifier\n"
        "TextClassifier().fit(['no space left on device', 'address already in use'], "
        "['disk_full', 'port_in_use'])\n"
        "print('sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
