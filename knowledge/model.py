"""The two learned models of the ranker.

* :class:`TextClassifier` - error text -> error class, TF-IDF over character n-grams of the
  masked text plus word features, LogisticRegression; trained on the corpus' train split and
  synthetic examples only. It gives a sensible class to text no rule matches.
* :class:`OutcomeModel` - P(recovered | signature tokens, strategy, class, context): a
  LogisticRegression over hashed interaction features, fit on recorded outcomes (duplicates
  aggregated into weighted rows, so a refit on 100k outcomes takes well under two seconds).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from aideploy.knowledge.history import PastOutcome
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

CLASSIFIER_TEXT_CHARS = 4000
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
        self._features = FeatureUnion(
            [
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=(3, 5),
                        min_df=1,
                        sublinear_tf=True,
                        max_features=60000,
                        dtype=np.float32,
                    ),
                ),
                (
                    "words",
                    TfidfVectorizer(
                        analyzer="word",
                        token_pattern=r"[a-z_][a-z0-9_]+|<\w+>",  # noqa: S106
                        ngram_range=(1, 2),
                        sublinear_tf=True,
                        dtype=np.float32,
                    ),
                ),
            ]
        )
        self._model = LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
        self.fitted = False

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> TextClassifier:
        if len(set(labels)) < 2:
            self.fitted = False
            self.classes_ = sorted(set(labels))
            return self
        x = self._features.fit_transform([classifier_text(t) for t in texts])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._model.fit(x, list(labels))
        self.classes_ = [str(c) for c in self._model.classes_]
        self.fitted = True
        return self

    def predict_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not self.fitted:
            only = self.classes_[0] if self.classes_ else None
            return [{only: 1.0} if only else {} for _ in texts]
        x = self._features.transform([classifier_text(t) for t in texts])
        probs = self._model.predict_proba(x)
        return [{c: float(p) for c, p in zip(self.classes_, row, strict=True)} for row in probs]

    def proba(self, text: str) -> dict[str, float]:
        return self.predict_proba([text])[0]


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
    s = strategy
    feats = [f"s={s}", f"c={error_class}|s={s}"]
    feats.extend(f"t={t}|s={s}" for t in tokens)
    feats.extend(f"{k}={v}|s={s}" for k, v in sorted(context.items()) if v)
    feats.extend(f"{k}={v}|c={error_class}|s={s}" for k, v in sorted(context.items()) if v)
    return feats


@dataclass(frozen=True)
class _Row:
    signature: str
    error_class: str
    strategy: str
    context: tuple[tuple[str, str], ...]


class OutcomeModel:
    """P(recovered | signature, strategy, class, context) from recorded outcomes."""

    MIN_OUTCOMES = 10

    def __init__(
        self, n_features: int = 2**18, context_keys: Iterable[str] = ("step", "tool", "os")
    ):
        self.context_keys = tuple(context_keys)
        self._hasher = FeatureHasher(
            n_features=n_features, input_type="string", alternate_sign=False
        )
        self._model: LogisticRegression | None = None
        self._token_cache: dict[str, list[str]] = {}
        self.trained_on = 0

    @property
    def fitted(self) -> bool:
        return self._model is not None

    def _tokens(self, signature: str) -> list[str]:
        toks = self._token_cache.get(signature)
        if toks is None:
            toks = signature_tokens(signature)
            if len(self._token_cache) > 200_000:
                self._token_cache.clear()
            self._token_cache[signature] = toks
        return toks

    def _context(self, context: Mapping[str, str]) -> dict[str, str]:
        return {k: str(context[k]) for k in self.context_keys if context.get(k)}

    def fit(self, outcomes: Iterable[PastOutcome]) -> OutcomeModel:
        agg: dict[_Row, list[float]] = {}
        n = 0
        for o in outcomes:
            if o.outcome not in ("recovered", "failed"):
                continue
            n += 1
            key = _Row(
                o.signature,
                o.error_class,
                o.strategy,
                tuple(sorted(self._context(o.context).items())),
            )
            acc = agg.setdefault(key, [0.0, 0.0])
            acc[0 if o.outcome == "recovered" else 1] += max(float(o.weight), 0.0)
        self.trained_on = n
        if n < self.MIN_OUTCOMES:
            self._model = None
            return self
        feats: list[list[str]] = []
        ys: list[int] = []
        ws: list[float] = []
        for key, (succ, fail) in agg.items():
            f = outcome_features(
                self._tokens(key.signature), key.error_class, key.strategy, dict(key.context)
            )
            for y, w in ((1, succ), (0, fail)):
                if w > 0:
                    feats.append(f)
                    ys.append(y)
                    ws.append(w)
        if len(set(ys)) < 2:
            self._model = None
            return self
        x = self._hasher.transform(feats)
        model = LogisticRegression(solver="liblinear", C=1.0, max_iter=200)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, np.asarray(ys), sample_weight=np.asarray(ws))
        self._model = model
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
        toks = self._tokens(signature)
        ctx = self._context(context or {})
        x = self._hasher.transform(
            [outcome_features(toks, error_class, s, ctx) for s in strategies]
        )
        probs = self._model.predict_proba(x)[:, 1]
        return {s: float(p) for s, p in zip(strategies, probs, strict=True)}
