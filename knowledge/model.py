"""The two learned models of the ranker.

* :class:`TextClassifier` - error text -> error class, TF-IDF over character n-grams of the
  masked text plus word features, LogisticRegression; trained on the corpus' train split and
  synthetic examples only. It gives a sensible class to text no rule matches.
* :class:`OutcomeModel` - P(recovered | signature tokens, strategy, class, context): a
  LogisticRegression over hashed interaction features, fit on recorded outcomes (duplicates
  aggregated into weighted rows, so a refit on 100k outcomes takes well under two seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import stat
import tempfile
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix, hstack, vstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier

from aideploy.knowledge.history import PastOutcome

CLASSIFIER_TEXT_CHARS = 2000
_SPACE = re.compile(r"\s+")
_HEXISH = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]+\b|\d+")
_TOKEN = re.compile(r"<\w+>|[A-Za-z_][A-Za-z0-9_]+|\d{2,3}\b")
MAX_TOKENS = 24


def classifier_text(text: str) -> str:
    """What the classifier reads: the tail of the output, lower-cased, numbers folded."""
    tail = text[-CLASSIFIER_TEXT_CHARS:].lower()
    return _HEXISH.sub("0", _SPACE.sub(" ", tail))


class TextClassifier:
    """Error class from text, for text the rules do not settle."""

    def __init__(self) -> None:
        self.classes_: list[str] = []
        self._chars = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 5),
            sublinear_tf=True,
            max_features=60000,
            dtype=np.float32,
        )
        self._words = TfidfVectorizer(
            analyzer="word",
            token_pattern=r"[a-z_][a-z0-9_]+|<\w+>",  # noqa: S106
            ngram_range=(1, 2),
            sublinear_tf=True,
            dtype=np.float32,
        )
        self._model = LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
        self.fitted = False
        self._blocks: list[tuple[Any, dict[str, int], Any, int]] | None = None

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TextClassifier:
        if len(set(labels)) < 2:
            self.fitted = False
            self.classes_ = sorted(set(labels))
            return self
        docs = [classifier_text(t) for t in texts]
        x = hstack([self._chars.fit_transform(docs), self._words.fit_transform(docs)], "csr")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._model.fit(x, list(labels))
        self.classes_ = [str(c) for c in self._model.classes_]
        self.fitted = True
        self._blocks = None
        return self

    def _prepare(self) -> None:
        """Plain arrays for scoring a few texts without the sparse/validation overhead."""
        blocks = []
        offset = 0
        for vec in (self._chars, self._words):
            blocks.append(
                (vec.build_analyzer(), vec.vocabulary_, np.asarray(vec.idf_, np.float64), offset)
            )
            offset += len(vec.vocabulary_)
        self._blocks = blocks
        self._coef_t = np.ascontiguousarray(self._model.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(self._model.intercept_, dtype=np.float64)

    def _scores(self, doc: str) -> np.ndarray:
        """Decision values of one document: sublinear TF-IDF, l2 per block, dot the weights."""
        idx_parts, val_parts = [], []
        assert self._blocks is not None, "fit() first"
        for analyzer, vocab, idf, offset in self._blocks:
            counts: dict[int, int] = {}
            for gram, n in Counter(analyzer(doc)).items():  # each distinct n-gram looked up once
                j = vocab.get(gram)
                if j is not None:
                    counts[j] = n
            if not counts:
                continue
            idx = np.fromiter(counts, dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            vals = (np.log(tf) + 1.0) * idf[idx]
            norm = float(np.sqrt(vals @ vals))
            if norm > 0:
                vals /= norm
            idx_parts.append(idx + offset)
            val_parts.append(vals)
        if not idx_parts:
            return self._intercept.copy()
        idx = np.concatenate(idx_parts)
        vals = np.concatenate(val_parts)
        return vals @ self._coef_t[idx] + self._intercept

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not self.fitted:
            only = self.classes_[0] if self.classes_ else None
            return [{only: 1.0} if only else {} for _ in texts]
        docs = [classifier_text(t) for t in texts]
        if len(docs) > 32:  # batches: the sparse path amortises its overhead
            x = hstack([self._chars.transform(docs), self._words.transform(docs)], "csr")
            probs = self._model.predict_proba(x)
        else:
            if getattr(self, "_blocks", None) is None:
                self._prepare()
            z = np.vstack([self._scores(d) for d in docs])
            if z.shape[1] == 1:  # two classes: one logit
                p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
                probs = np.column_stack([1.0 - p1, p1])
            else:
                z -= z.max(axis=1, keepdims=True)
                e = np.exp(z)
                probs = e / e.sum(axis=1, keepdims=True)
        return [{c: float(p) for c, p in zip(self.classes_, row, strict=True)} for row in probs]

    def proba(self, text: str) -> dict[str, float]:
        return self.predict_proba([text])[0]


# --- the bundled classifier, cached on disk -----------------------------------------------

CACHE_FORMAT = 1  # bump when TextClassifier's fitted state changes shape


def cache_key(texts: Sequence[str], labels: Sequence[str]) -> str:
    """What a cached classifier was trained from: the training data, the format and sklearn."""
    import sklearn

    digest = hashlib.sha256(f"{CACHE_FORMAT}|{sklearn.__version__}|".encode())
    for text, label in zip(texts, labels, strict=True):
        digest.update(label.encode() + b"\x00" + text.encode("utf-8", "replace") + b"\x01")
    return digest.hexdigest()[:40]


def _private_dir(path: Path) -> bool:
    """A directory only this user owns and can write (0700), created so when missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def load_cached(directory: Path, key: str) -> TextClassifier | None:
    """The classifier cached under ``key``, or None.

    Unpickling runs code from the file, so a file is read only when nothing but this user could
    have written it: the directory is this user's and 0700, the file is a regular file (not a
    symlink: O_NOFOLLOW) owned by this user with no group/other permission bits, checked on the
    open descriptor itself. Anyone able to write such a file can already run code as this user.
    """
    if not hasattr(os, "getuid"):
        return None
    try:
        if not _private_dir(directory):
            return None
        fd = os.open(directory / f"classifier-{key}.pickle", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None
        try:
            obj = pickle.load(fh)  # noqa: S301 - a private file this user wrote, see above
        except Exception:  # a truncated or stale file: retrain
            return None
    return obj if isinstance(obj, TextClassifier) and obj.fitted else None


def store_cached(directory: Path, key: str, classifier: TextClassifier) -> None:
    """Write the classifier atomically (a private temp file renamed into place); best effort."""
    if not hasattr(os, "getuid"):
        return
    tmp = None
    try:
        if not _private_dir(directory):
            return
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".classifier-", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:  # mkstemp creates it 0600
            pickle.dump(classifier, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / f"classifier-{key}.pickle")
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# --- outcome model -------------------------------------------------------------------------


def signature_tokens(signature: str) -> list[str]:
    seen: dict[str, None] = {}
    for tok in _TOKEN.findall(signature.lower()):
        seen.setdefault(tok, None)
        if len(seen) >= MAX_TOKENS:
            break
    return list(seen)


def outcome_features(
    tokens: Sequence[str], error_class: str, strategy: str, context: Mapping[str, str]
) -> list[str]:
    """The features of one (signature, strategy) pair, readable (the model hashes them)."""
    s = strategy
    feats = [f"s={s}", f"c={error_class}|s={s}"]
    feats.extend(f"t={t}|s={s}" for t in tokens)
    feats.extend(f"{k}={v}|s={s}" for k, v in sorted(context.items()) if v)
    feats.extend(f"{k}={v}|c={error_class}|s={s}" for k, v in sorted(context.items()) if v)
    return feats


def _h(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "replace"))


_MIX = np.int64(1_000_003)


@dataclass(frozen=True)
class _Row:
    signature: str
    error_class: str
    strategy: str
    context: tuple[tuple[str, str], ...]


class OutcomeModel:
    """P(recovered | signature, strategy, class, context) from recorded outcomes.

    Features are the interactions of the strategy with: itself, the class, each signature token,
    each context value, and class x context. They are hashed (crc32, so stable across processes)
    straight into a sparse matrix; the model is a logistic regression fit by SGD.
    """

    MIN_OUTCOMES = 10

    def __init__(
        self, n_features: int = 2**20, context_keys: Iterable[str] = ("step", "tool", "os")
    ) -> None:
        self.n_features = n_features
        self.context_keys = tuple(context_keys)
        self._model: SGDClassifier | None = None
        self._coef: np.ndarray | None = None
        self._intercept = 0.0
        self._token_cache: dict[str, np.ndarray] = {}
        self._hash_cache: dict[str, int] = {}
        self._feature_cache: dict[str, int] = {}
        self._agg: dict[_Row, list[float]] = {}
        self._n = 0
        self.trained_on = 0

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def _tokens(self, signature: str) -> np.ndarray:
        toks = self._token_cache.get(signature)
        if toks is None:
            hashes = self._hash_cache
            if len(hashes) > 1_000_000:
                hashes.clear()
            vals = []
            for t in signature_tokens(signature):
                v = hashes.get(t)
                if v is None:
                    v = hashes[t] = _h("t=" + t)
                vals.append(v)
            toks = np.array(vals, dtype=np.int64)
            if len(self._token_cache) > 300_000:
                self._token_cache.clear()
            self._token_cache[signature] = toks
        return toks

    def _feature_hash(self, text: str) -> int:
        v = self._feature_cache.get(text)
        if v is None:
            if len(self._feature_cache) > 100_000:
                self._feature_cache.clear()
            v = self._feature_cache[text] = _h(text)
        return v

    def _context(self, context: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple((k, str(context[k])) for k in self.context_keys if context.get(k))

    def _matrix(self, keys: Sequence[_Row]) -> csr_matrix:
        n = len(keys)
        hashes: dict[str, int] = {}

        def h(text: str) -> int:
            v = hashes.get(text)
            if v is None:
                v = hashes[text] = _h(text)
            return v

        sid = np.fromiter((h("s=" + k.strategy) for k in keys), dtype=np.int64, count=n)
        cid = np.fromiter((h("c=" + k.error_class) for k in keys), dtype=np.int64, count=n)
        rows_idx = np.arange(n, dtype=np.int64)
        toks = [self._tokens(k.signature) for k in keys]
        tok_len = np.fromiter((len(t) for t in toks), dtype=np.int64, count=n)
        tok_rows = np.repeat(rows_idx, tok_len)
        tok_vals = np.concatenate(toks) if n else np.zeros(0, dtype=np.int64)
        ctx_lists = [[h(f"{a}={b}") for a, b in k.context] for k in keys]
        ctx_len = np.fromiter((len(c) for c in ctx_lists), dtype=np.int64, count=n)
        ctx_rows = np.repeat(rows_idx, ctx_len)
        ctx_vals = np.fromiter(
            (v for c in ctx_lists for v in c), dtype=np.int64, count=int(ctx_len.sum())
        )
        rows = np.concatenate((rows_idx, rows_idx, tok_rows, ctx_rows, ctx_rows))
        vals = np.concatenate(
            (np.ones(n, dtype=np.int64), cid, tok_vals, ctx_vals, ctx_vals * _MIX + cid[ctx_rows])
        )
        cols = (vals * _MIX + sid[rows]) % self.n_features
        data = np.ones(len(cols), dtype=np.float32)
        x = coo_matrix((data, (rows, cols)), shape=(n, self.n_features)).tocsr()
        x.data = np.minimum(x.data, 1.0)
        return x

    def add(self, o: PastOutcome) -> None:
        """Count one outcome into the aggregate the next :meth:`refit` trains on."""
        if o.outcome not in ("recovered", "failed"):
            return
        self._n += 1
        ctx = o.context
        key = _Row(
            o.signature,
            o.error_class,
            o.strategy,
            tuple((k, str(v)) for k in self.context_keys if (v := ctx.get(k))) if ctx else (),
        )
        acc = self._agg.get(key)
        if acc is None:
            acc = self._agg[key] = [0.0, 0.0]
        acc[0 if o.outcome == "recovered" else 1] += max(float(o.weight), 0.0)

    def fit(self, outcomes: Iterable[PastOutcome]) -> OutcomeModel:
        """Fit on exactly these outcomes (forgets what was added before)."""
        self._agg = {}
        self._n = 0
        for o in outcomes:
            self.add(o)
        return self.refit()

    def refit(self) -> OutcomeModel:
        """Fit on every outcome added so far (aggregated into weighted rows as they came)."""
        agg = self._agg
        n = self._n
        self.trained_on = n
        if n < self.MIN_OUTCOMES:
            self._model = None
            return self
        keys = list(agg)
        x = self._matrix(keys)
        succ = np.array([agg[k][0] for k in keys])
        fail = np.array([agg[k][1] for k in keys])
        # each pair appears once as a success row and once as a failure row, weighted
        pos, neg = succ > 0, fail > 0
        if not pos.any() or not neg.any():
            self._model = None
            return self
        xx = vstack([x[pos], x[neg]], format="csr")
        yy = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())])
        ww = np.concatenate([succ[pos], fail[neg]])
        # a constant step: the default schedule (step 1/(alpha*t)) took steps so large with the
        # weighted rows that weights reached the hundreds and every untried pair scored ~1.0
        model = SGDClassifier(
            loss="log_loss",
            alpha=1e-4,
            learning_rate="constant",
            eta0=0.05,
            max_iter=8,
            tol=None,
            random_state=0,
            average=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(xx, yy, sample_weight=ww)
        self._model = model
        self._coef = None
        return self

    def predict(
        self,
        signature: str,
        error_class: str,
        strategies: Sequence[str],
        context: Mapping[str, str] | None = None,
    ) -> dict[str, float]:
        if self._model is None or not strategies:
            return {}
        ctx = self._context(context or {})
        if self._coef is None:
            self._coef = np.asarray(self._model.coef_[0], dtype=np.float64)
            self._intercept = float(self._model.intercept_[0])
        # every candidate strategy in one pass. The rows share all features but the strategy
        # they are mixed with, so the hashed columns are one (strategies x features) array
        # computed exactly as _matrix does; the features are binary, so P(recovered) is the
        # sigmoid of the intercept plus the weights of each row's distinct columns.
        h = self._feature_hash
        cid = np.int64(h("c=" + error_class))
        ctx_ids = np.array([h(f"{a}={b}") for a, b in ctx], dtype=np.int64)
        vals = np.concatenate(
            (
                np.array([1, cid], dtype=np.int64),
                self._tokens(signature),
                ctx_ids,
                ctx_ids * _MIX + cid,
            )
        )
        sids = np.array([h("s=" + s) for s in strategies], dtype=np.int64)
        cols = (vals[None, :] * _MIX + sids[:, None]) % self.n_features
        cols.sort(axis=1)
        weights = self._coef[cols]
        weights[:, 1:][cols[:, 1:] == cols[:, :-1]] = 0.0  # a column counts once per row
        z = weights.sum(axis=1) + self._intercept
        probs = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
        return {s: float(p) for s, p in zip(strategies, probs, strict=True)}
