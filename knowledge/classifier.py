"""The text classifier: error text -> error class.

TF-IDF over character n-grams of the masked text plus word features, and a multinomial logistic
regression; trained on the corpus' train split and synthetic examples only. It gives a sensible
class to text no rule matches. Training is numpy/scipy (the features and objective of
scikit-learn's TfidfVectorizer and LogisticRegression, solved in the dual: see
:func:`fit_logistic`), and what the classifier learned is kept as plain numpy arrays (cached on
disk, keyed by the training data); scoring is numpy over those. scikit-learn is only the tests'
yardstick.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aideploy.core.atomic import atomic_file
from aideploy.core.lazy_module import lazy_module
from aideploy.core.private import private_dir

if TYPE_CHECKING:
    import numpy as np
else:  # loaded when first used: a run without failures never needs it
    np = lazy_module("numpy")

CLASSIFIER_TEXT_CHARS = 2000
WORD_CACHE_SIZE = 50_000  # words whose character n-gram columns a classifier keeps
_SPACE = re.compile(r"\s+")
_HEXISH = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]+\b|\d+")


def classifier_text(text: str) -> str:
    """What the classifier reads: the tail of the output, lower-cased, numbers folded."""
    tail = text[-CLASSIFIER_TEXT_CHARS:].lower()
    return _HEXISH.sub("0", _SPACE.sub(" ", tail))


# --- text features ---------------------------------------------------------------------------
# The two feature blocks of the classifier. Training hands these settings to scikit-learn's
# TfidfVectorizer; scoring computes the same n-grams itself (tests/test_model_numpy.py checks
# the two agree on every corpus text).

CHAR_NGRAMS = (3, 5)
CHAR_MAX_FEATURES = 60000
WORD_NGRAMS = (1, 2)
WORD_PATTERN = r"[a-z_][a-z0-9_]+|<\w+>"


def char_wb_grams(doc: str, lo: int = CHAR_NGRAMS[0], hi: int = CHAR_NGRAMS[1]) -> list[str]:
    """Character n-grams inside words, each word padded with one space on either side; a word
    no longer than n (padding included) counts once, as a whole, and ends the longer sizes."""
    grams: list[str] = []
    for word in doc.lower().split():
        padded = f" {word} "
        size = len(padded)
        for n in range(lo, hi + 1):
            if size <= n:
                grams.append(padded)
                break
            grams.extend([padded[i : i + n] for i in range(size - n + 1)])
    return grams


def word_grams_of(pattern: str, lo: int, hi: int) -> Callable[[str], list[str]]:
    """Tokens matching ``pattern`` in the lower-cased text, then their runs of lo..hi tokens
    joined by a space (lo == 1: the tokens themselves first)."""
    find = re.compile(pattern).findall

    def grams(doc: str) -> list[str]:
        tokens: list[str] = find(doc.lower())
        out = list(tokens) if lo == 1 else []
        for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return out

    return grams


@dataclass(frozen=True)
class _Block:
    """One TF-IDF feature block: its n-grams, their columns (from ``offset``) and idf."""

    analyzer: str  # "char_wb" or "word"
    ngrams: tuple[int, int]
    pattern: str
    terms: tuple[str, ...]  # terms[i] is column offset + i
    idf: np.ndarray
    offset: int

    def grams(self) -> Callable[[str], list[str]]:
        if self.analyzer == "char_wb":
            lo, hi = self.ngrams
            return lambda doc: char_wb_grams(doc, lo, hi)
        return word_grams_of(self.pattern, *self.ngrams)


def _fit_estimators(docs: Sequence[str], labels: Sequence[str]) -> tuple[Any, Any, Any]:
    """The fitted scikit-learn vectorizers (characters, words) and LogisticRegression."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=CHAR_NGRAMS,
        sublinear_tf=True,
        max_features=CHAR_MAX_FEATURES,
        dtype=np.float32,
    )
    words = TfidfVectorizer(
        analyzer="word",
        token_pattern=WORD_PATTERN,
        ngram_range=WORD_NGRAMS,
        sublinear_tf=True,
        dtype=np.float32,
    )
    model = LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
    x = hstack([chars.fit_transform(docs), words.fit_transform(docs)], "csr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, list(labels))
    return chars, words, model


# --- training: TF-IDF and a multinomial logistic regression in numpy/scipy -----------------
# The same features and objective as scikit-learn's TfidfVectorizer(sublinear_tf=True) and
# LogisticRegression(C=LOGISTIC_C, class_weight="balanced"), solved in its dual form: with far
# fewer texts than n-grams, the weights are a combination of the training rows (W = X.T @ A), so
# L-BFGS works on one number per (text, class) over the texts' Gram matrix instead of one per
# (n-gram, class). Training the bundled corpus takes a fraction of a second and imports no
# scikit-learn.

LOGISTIC_C = 20.0
LOGISTIC_MAX_ITER = 500


def _grams_of_words(doc: str, lo: int, hi: int, cache: dict[str, list[str]]) -> Counter[str]:
    """:func:`char_wb_grams` of ``doc`` as counts, each distinct word's n-grams made once."""
    counts: Counter[str] = Counter()
    for word, n in Counter(doc.lower().split()).items():
        grams = cache.get(word)
        if grams is None:
            grams = cache[word] = char_wb_grams(word, lo, hi)
        for gram in grams:
            counts[gram] += n
    return counts


def _block_counts(
    analyzer: str, ngrams: tuple[int, int], pattern: str, docs: Sequence[str]
) -> list[Counter[str]]:
    if analyzer == "char_wb":
        cache: dict[str, list[str]] = {}
        return [_grams_of_words(doc, *ngrams, cache) for doc in docs]
    grams = word_grams_of(pattern, *ngrams)
    return [Counter(grams(doc)) for doc in docs]


def fit_tfidf(docs: Sequence[str]) -> tuple[list[_Block], Any]:
    """The feature blocks learned from ``docs`` and the documents' TF-IDF rows (scipy CSR):
    sublinear term frequency, smoothed idf, each block's part of a row of unit length."""
    from scipy import sparse

    blocks: list[_Block] = []
    parts = []
    offset = 0
    n_docs = len(docs)
    for analyzer, ngrams, pattern, limit in (
        ("char_wb", CHAR_NGRAMS, "", CHAR_MAX_FEATURES),
        ("word", WORD_NGRAMS, WORD_PATTERN, 0),
    ):
        counts = _block_counts(analyzer, ngrams, pattern, docs)
        total: Counter[str] = Counter()
        df: Counter[str] = Counter()
        for c in counts:
            total.update(c)
            df.update(c.keys())
        terms = sorted(total)
        if limit and len(terms) > limit:  # the most frequent, as TfidfVectorizer's max_features
            terms = sorted(sorted(total, key=lambda t: (-total[t], t))[:limit])
        column = {t: j for j, t in enumerate(terms)}
        idf = np.log((1.0 + n_docs) / (1.0 + np.array([df[t] for t in terms], dtype=np.float64)))
        idf += 1.0
        rows, cols, vals = [], [], []
        for i, c in enumerate(counts):
            for gram, n in c.items():
                j = column.get(gram)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(n)
        col = np.asarray(cols, dtype=np.int64)
        val = (np.log(np.asarray(vals, dtype=np.float64)) + 1.0) * idf[col] if vals else np.zeros(0)
        part = sparse.csr_matrix((val, (rows, col)), shape=(n_docs, len(terms)))
        norms = np.sqrt(np.asarray(part.multiply(part).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        parts.append(sparse.diags(1.0 / norms) @ part)
        blocks.append(_Block(analyzer, ngrams, pattern, tuple(terms), idf, offset))
        offset += len(terms)
    return blocks, sparse.hstack(parts, format="csr")


def fit_logistic(
    x: Any, y: Sequence[int], n_classes: int, *, c: float = LOGISTIC_C
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (classes x features) and intercepts minimising sum_i w_i * cross-entropy_i +
    |W|^2 / (2c), with w_i balancing the classes (n / (k * n_class)); the intercepts are not
    penalised."""
    from scipy.optimize import minimize

    labels = np.asarray(y, dtype=np.int64)
    n = x.shape[0]
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), labels] = 1.0
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = (n / (n_classes * np.maximum(counts, 1.0)))[labels][:, None]
    gram = np.asarray((x @ x.T).todense(), dtype=np.float64)
    split = n * n_classes

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        a = params[:split].reshape(n, n_classes)
        b = params[split:]
        ka = gram @ a
        z = ka + b
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -float((weights * onehot * log_p).sum()) + float((a * ka).sum()) / (2.0 * c)
        g = weights * (np.exp(log_p) - onehot)
        grad_a = gram @ (g + a / c)
        return loss, np.concatenate([grad_a.ravel(), g.sum(axis=0)])

    start = np.zeros(split + n_classes)
    found = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": LOGISTIC_MAX_ITER, "gtol": 1e-5, "ftol": 1e-8},
    )
    a = found.x[:split].reshape(n, n_classes)
    coef = np.asarray((x.T @ a).T, dtype=np.float64)
    return coef, np.asarray(found.x[split:], dtype=np.float64)


class TextClassifier:
    """Error class from text, for text the rules do not settle.

    :meth:`fit` trains with scikit-learn and keeps only the learned numbers (vocabularies, idf,
    coefficients, intercepts, classes); scoring is numpy over those.
    """

    def __init__(self) -> None:
        self.classes_: list[str] = []
        self.fitted = False
        self._blocks: list[_Block] = []
        self._analyzers: list[Callable[[str], list[str]]] = []
        self._vocabs: list[dict[str, int]] = []
        self._word_columns: dict[str, np.ndarray] = {}  # word -> its char n-grams' columns
        self._coef_t = np.zeros((0, 0))
        self._coef_blocks: list[np.ndarray] = []
        self._intercept = np.zeros(0)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TextClassifier:
        """Train on ``texts`` (numpy and scipy; see :func:`fit_tfidf` and :func:`fit_logistic`)."""
        if len(set(labels)) < 2:
            self.fitted = False
            self.classes_ = sorted(set(labels))
            return self
        from threadpoolctl import threadpool_limits

        docs = [classifier_text(t) for t in texts]
        classes = sorted(set(labels))
        # small matrices: one BLAS thread is fastest, and threads spinning on a busy machine
        # made training many times slower
        with threadpool_limits(limits=1):
            blocks, x = fit_tfidf(docs)
            y = [classes.index(label) for label in labels]
            coef, intercept = fit_logistic(x, y, len(classes))
        if len(classes) == 2:  # one logit, as scoring expects of two classes
            coef, intercept = coef[1:] - coef[:1], intercept[1:] - intercept[:1]
        return self._set(blocks, coef, intercept, classes)

    def _set_estimators(self, chars: Any, words: Any, model: Any) -> TextClassifier:
        blocks, offset = [], 0
        for kind, ngrams, pattern, vec in (
            ("char_wb", CHAR_NGRAMS, "", chars),
            ("word", WORD_NGRAMS, WORD_PATTERN, words),
        ):
            terms = [""] * len(vec.vocabulary_)
            for term, j in vec.vocabulary_.items():
                terms[j] = term
            idf = np.asarray(vec.idf_, dtype=np.float64)
            blocks.append(_Block(kind, ngrams, pattern, tuple(terms), idf, offset))
            offset += len(terms)
        return self._set(
            blocks,
            np.asarray(model.coef_, dtype=np.float64),
            np.asarray(model.intercept_, dtype=np.float64),
            [str(c) for c in model.classes_],
        )

    def _set(
        self, blocks: list[_Block], coef: np.ndarray, intercept: np.ndarray, classes: list[str]
    ) -> TextClassifier:
        n_features = sum(len(b.terms) for b in blocks)
        rows = 1 if len(classes) == 2 else len(classes)
        if coef.shape != (rows, n_features) or intercept.shape != (rows,):
            raise ValueError("classifier weights do not match its vocabulary and classes")
        self._blocks = blocks
        self._analyzers = [b.grams() for b in blocks]
        self._vocabs = [{t: j for j, t in enumerate(b.terms)} for b in blocks]
        self._word_columns = {}
        self._coef_t = np.ascontiguousarray(coef.T)
        # each block's rows of the weights (views)
        self._coef_blocks = [self._coef_t[b.offset : b.offset + len(b.terms)] for b in blocks]
        self._intercept = intercept
        self.classes_ = classes
        self.fitted = True
        return self

    def _char_counts(
        self, doc: str, block: _Block, vocab: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The columns of the character n-grams of ``doc`` (ascending) and their counts: a
        word's known columns are worked out once and kept (error output repeats its words
        across texts)."""
        cache = self._word_columns
        lo, hi = block.ngrams
        arrays = []
        for word, n in Counter(doc.lower().split()).items():
            cols = cache.get(word)
            if cols is None:
                cols = np.array(
                    [j for g in char_wb_grams(word, lo, hi) if (j := vocab.get(g)) is not None],
                    dtype=np.intp,
                )
                if len(cache) < WORD_CACHE_SIZE:
                    cache[word] = cols
            if len(cols):
                arrays.extend([cols] * n)
        if not arrays:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
        columns, counts = np.unique(np.concatenate(arrays), return_counts=True)
        return columns, counts

    def _word_counts(
        self, doc: str, analyzer: Callable[[str], list[str]], vocab: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The columns of the word n-grams of ``doc`` and their counts."""
        columns, counts = [], []
        for gram, n in Counter(analyzer(doc)).items():  # each n-gram looked up once
            j = vocab.get(gram)
            if j is not None:
                columns.append(j)
                counts.append(n)
        return np.array(columns, dtype=np.intp), np.array(counts, dtype=np.intp)

    def _scores(self, doc: str) -> np.ndarray:
        """Decision values of one document: sublinear TF-IDF, l2 per block, dot the weights."""
        z = self._intercept.copy()
        for block, analyzer, vocab, coef in zip(
            self._blocks, self._analyzers, self._vocabs, self._coef_blocks, strict=True
        ):
            if block.analyzer == "char_wb":
                idx, tf = self._char_counts(doc, block, vocab)
            else:
                idx, tf = self._word_counts(doc, analyzer, vocab)
            if not len(idx):
                continue
            vals = np.log(tf.astype(np.float64))
            vals += 1.0
            vals *= block.idf.take(idx)
            norm = math.sqrt(vals @ vals)
            if norm > 0:
                vals /= norm
            z += vals @ coef.take(idx, axis=0)
        return z

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """One row of decision values per text (one column when there are two classes)."""
        assert self.fitted, "fit() first"
        return np.vstack([self._scores(classifier_text(t)) for t in texts])

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not self.fitted:
            only = self.classes_[0] if self.classes_ else None
            return [{only: 1.0} if only else {} for _ in texts]
        return [self._proba(self._scores(classifier_text(t))) for t in texts]

    def _proba(self, z: np.ndarray) -> dict[str, float]:
        """Class probabilities from one text's decision values."""
        if len(z) == 1:  # two classes: one logit
            p1 = 1.0 / (1.0 + np.exp(-z[0]))
            probs = [1.0 - p1, p1]
        else:
            e = np.exp(z - z.max())
            probs = (e / e.sum()).tolist()
        return {c: float(p) for c, p in zip(self.classes_, probs, strict=True)}

    def proba(self, text: str) -> dict[str, float]:
        return self.predict_proba([text])[0]

    # --- plain-data form (the on-disk cache) ---------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as numpy arrays (``np.savez`` them; no pickled objects)."""
        assert self.fitted, "fit() first"
        meta = {
            "format": CACHE_FORMAT,
            "classes": self.classes_,
            "blocks": [
                {"analyzer": b.analyzer, "ngrams": list(b.ngrams), "pattern": b.pattern}
                for b in self._blocks
            ],
            "terms": [list(b.terms) for b in self._blocks],
        }
        coef = self._coef_t.T
        narrow = coef.astype(np.float32)  # scikit-learn fits float32 features in float32
        out: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
            "coef": narrow if np.array_equal(narrow, coef) else coef,  # half the file, exactly
            "intercept": self._intercept,
        }
        for i, b in enumerate(self._blocks):
            out[f"idf{i}"] = b.idf
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> TextClassifier:
        """The classifier :meth:`to_arrays` describes; ValueError/KeyError when malformed."""
        meta = json.loads(np.asarray(arrays["meta"], dtype=np.uint8).tobytes().decode())
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError("another cache format")
        blocks, offset = [], 0
        for i, (spec, terms) in enumerate(zip(meta["blocks"], meta["terms"], strict=True)):
            if spec["analyzer"] not in ("char_wb", "word"):
                raise ValueError(f"unknown analyzer {spec['analyzer']!r}")
            lo, hi = (int(n) for n in spec["ngrams"])
            idf = np.asarray(arrays[f"idf{i}"], dtype=np.float64)
            if idf.shape != (len(terms),):
                raise ValueError("idf does not match the vocabulary")
            blocks.append(
                _Block(spec["analyzer"], (lo, hi), str(spec["pattern"]), tuple(terms), idf, offset)
            )
            offset += len(terms)
        coef = np.asarray(arrays["coef"], dtype=np.float64)
        intercept = np.asarray(arrays["intercept"], dtype=np.float64)
        return cls()._set(blocks, coef, intercept, [str(c) for c in meta["classes"]])


# --- the bundled classifier, cached on disk -----------------------------------------------

CACHE_FORMAT = (
    3  # bump when training or the fitted state change (1: a pickle; 2: scikit-learn fits)
)


def _sklearn_version() -> str:
    """The installed scikit-learn's version, read from its metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return "none"


def cache_key(texts: Sequence[str], labels: Sequence[str]) -> str:
    """What a cached classifier was trained from: the training data, the format and sklearn."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{_sklearn_version()}|".encode())
    for text, label in zip(texts, labels, strict=True):
        digest.update(label.encode() + b"\x00" + text.encode("utf-8", "replace") + b"\x01")
    return digest.hexdigest()[:40]


def _private_dir(path: Path) -> bool:
    """Whether ``path`` is a directory only this user owns and can write (0700). Reading checks
    and never changes it: a cache others could have written into is not trusted."""
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def cache_file(directory: Path, key: str) -> Path:
    return directory / f"classifier-{key}.npz"


def load_cached(directory: Path, key: str) -> TextClassifier | None:
    """The classifier cached under ``key``, or None.

    The file holds numbers and JSON only (``np.load`` with ``allow_pickle=False``: nothing in
    it is executed). It is still read only when nothing but this user could have written it,
    since it decides the classes every error is given: the directory is this user's and 0700,
    the file is a regular file (not a symlink: O_NOFOLLOW) owned by this user with no
    group/other permission bits, checked on the open descriptor itself.
    """
    if not hasattr(os, "getuid"):
        return None
    try:
        if not _private_dir(directory):
            return None
        fd = os.open(cache_file(directory, key), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        try:
            with np.load(fh, allow_pickle=False) as arrays:
                return TextClassifier.from_arrays(arrays)
        except Exception:  # a truncated, stale or foreign file: retrain
            return None


def store_cached(directory: Path, key: str, classifier: TextClassifier) -> None:
    """Write the classifier atomically (a private 0600 file renamed into place); best effort."""
    if not hasattr(os, "getuid") or not classifier.fitted:
        return
    with contextlib.suppress(OSError):
        private_dir(directory, tighten=True)  # aideploy's own cache: created or made 0700
        if not _private_dir(directory):
            return
        with atomic_file(cache_file(directory, key), mode=0o600) as fh:
            np.savez(fh, allow_pickle=False, **classifier.to_arrays())


# --- outcome model -------------------------------------------------------------------------
