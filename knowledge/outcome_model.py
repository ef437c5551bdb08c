"""The outcome model: P(recovered | signature tokens, strategy, class, context, cause parts).

The cause parts (the rule ids that match the signature, the service, command or package it
names, the tool) are what several causes may share: a fix proven on one informs the others.

A logistic regression over hashed interaction features, fit on recorded outcomes (duplicates
aggregated into weighted rows, so a refit on 100k outcomes takes well under two seconds).
scikit-learn only fits it; the weights are kept and scored with numpy.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aideploy.core.lazy_module import lazy_module
from aideploy.knowledge.history import PastOutcome

if TYPE_CHECKING:
    import numpy as np
    from scipy.sparse import csr_matrix
else:  # loaded when first used: a run without failures never needs it
    np = lazy_module("numpy")

_TOKEN = re.compile(r"<\w+>|[A-Za-z_][A-Za-z0-9_]+|\d{2,3}\b")
MAX_TOKENS = 24


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


def cause_parts(cause: str, known: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """A cause key's parts as (kind, value) pairs (``rule=x,service=y`` gives the rule id and
    the named service), leaving out the ones already in ``known``: features that several causes
    sharing a rule or a named detail have in common, so what fixed one informs the others."""
    if not cause:
        return ()
    seen = set(known)
    out: list[tuple[str, str]] = []
    for part in cause.split(","):
        kind, eq, value = part.partition("=")
        pair = (kind, value)
        if eq and value and pair not in seen:
            seen.add(pair)
            out.append(pair)
    return tuple(out)


def _h(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "replace"))


#: a plain int: with an int64 array it stays int64 (and wraps alike)
_MIX = 1_000_003


@dataclass(frozen=True)
class _Row:
    signature: str
    error_class: str
    strategy: str
    context: tuple[tuple[str, str], ...]


class OutcomeModel:
    """P(recovered | signature, strategy, class, context) from recorded outcomes.

    Features are the interactions of the strategy with: itself, the class, each signature token,
    each context value and cause part, and class x (context value or cause part). They are hashed (crc32, so stable across processes)
    straight into a sparse matrix; the model is a logistic regression fit by SGD (scikit-learn,
    imported by the first :meth:`refit` with enough outcomes), kept as its weight vector.
    """

    MIN_OUTCOMES = 10

    def __init__(
        self, n_features: int = 2**20, context_keys: Iterable[str] = ("step", "tool", "os")
    ) -> None:
        self.n_features = n_features
        self.context_keys = tuple(context_keys)
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
        return self._coef is not None

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

    def _context(self, context: Mapping[str, str], cause: str = "") -> tuple[tuple[str, str], ...]:
        pairs = tuple((k, str(context[k])) for k in self.context_keys if context.get(k))
        return pairs + cause_parts(cause, pairs)

    def _matrix(self, keys: Sequence[_Row]) -> csr_matrix:
        from scipy.sparse import coo_matrix

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

    def add(self, o: PastOutcome, cause: str = "") -> None:
        """Count one outcome into the aggregate the next :meth:`refit` trains on; ``cause``: the
        failure's cause key (its rule ids, named details and tool, comma-separated)."""
        if o.outcome not in ("recovered", "failed"):
            return
        self._n += 1
        key = _Row(o.signature, o.error_class, o.strategy, self._context(o.context or {}, cause))
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
            self._coef = None
            return self
        keys = list(agg)
        x = self._matrix(keys)
        succ = np.array([agg[k][0] for k in keys])
        fail = np.array([agg[k][1] for k in keys])
        # each pair appears once as a success row and once as a failure row, weighted
        pos, neg = succ > 0, fail > 0
        if not pos.any() or not neg.any():
            self._coef = None
            return self
        from scipy.sparse import vstack
        from sklearn.linear_model import SGDClassifier

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
        self._coef = np.asarray(model.coef_[0], dtype=np.float64)
        self._intercept = float(model.intercept_[0])
        return self

    def predict(
        self,
        signature: str,
        error_class: str,
        strategies: Sequence[str],
        context: Mapping[str, str] | None = None,
        cause: str = "",
    ) -> dict[str, float]:
        if self._coef is None or not strategies:
            return {}
        ctx = self._context(context or {}, cause)
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
