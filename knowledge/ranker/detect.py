"""Detection: what a failed command's text is - its signature, rule hits and error class.

Each error class is scored from the regex rules and from a text classifier (TF-IDF +
LogisticRegression) trained on the bundled corpus' train split and synthetic examples; the two
are combined as independent votes and normalised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

import platformdirs

from aideploy.core.recovery import Failure
from aideploy.core.result import Result
from aideploy.knowledge.classes import ERROR_CLASSES, UNKNOWN
from aideploy.knowledge.classifier import TextClassifier, cache_key, load_cached, store_cached
from aideploy.knowledge.corpus import Example, load_bundled, train_examples
from aideploy.knowledge.rules import RuleHit, RuleSet
from aideploy.knowledge.signature import signature_of

# with no rule hit and no class above UNSURE_BELOW from the classifier, "unknown" scores at
# least UNKNOWN_FLOOR (before normalising)
UNSURE_BELOW = 0.25
UNKNOWN_FLOOR = 0.3
ANALYSIS_CACHE_SIZE = 512  # texts whose analysis is kept between detect and candidates
CAUSE_CACHE_SIZE = 8192  # signatures whose cause key is kept
# the details that name a cause when a signature still shows them (paths, ports and versions
# are masked in signatures: they vary between machines)
CAUSE_DETAILS = ("service", "command", "package", "module", "unit", "database", "role", "user")


@dataclass(frozen=True)
class Analysis:
    """What detection made of a text (cached between detect and candidates)."""

    signature: str
    hits: list[RuleHit]
    class_scores: list[tuple[str, float]]  # (class, normalised score), best first
    details: Mapping[str, str]

    @property
    def error_class(self) -> str:
        return self.class_scores[0][0] if self.class_scores else UNKNOWN


# --- the classifier --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def bundled_classifier() -> TextClassifier:
    """Trained once per machine: cached in the user's cache directory as plain arrays, keyed by
    the training data and the scikit-learn version (see
    :func:`~aideploy.knowledge.classifier.load_cached`). A cache hit imports no scikit-learn."""
    usable = [e for e in train_examples(load_bundled()) if e.split != "test"]
    texts, labels = [e.text for e in usable], [e.error_class for e in usable]
    directory = classifier_cache_dir()
    key = cache_key(texts, labels)
    cached = load_cached(directory, key)
    if cached is not None:
        return cached
    classifier = TextClassifier().fit(texts, labels)
    store_cached(directory, key, classifier)
    return classifier


def classifier_cache_dir() -> Path:
    """``$AIDEPLOY_CACHE_DIR`` or the user's cache directory for aideploy, then classifier/."""
    env = os.environ.get("AIDEPLOY_CACHE_DIR")
    base = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("aideploy"))
    return base / "classifier"


def train_classifier(examples: Sequence[Example]) -> TextClassifier:
    """A classifier trained on the examples outside the test split (not cached)."""
    usable = [e for e in examples if e.split != "test"]
    return TextClassifier().fit([e.text for e in usable], [e.error_class for e in usable])


# --- detection -------------------------------------------------------------------------------


def combine(rule: Mapping[str, float], model: Mapping[str, float]) -> list[tuple[str, float]]:
    """Class scores from the rules' and the classifier's, normalised, best first."""
    scores: dict[str, float] = {}
    for c in ERROR_CLASSES:
        r, m = rule.get(c, 0.0), model.get(c, 0.0)
        scores[c] = 1.0 - (1.0 - r) * (1.0 - m) if r or m else 0.0
    if not any(rule.values()) and max(model.values(), default=0.0) < UNSURE_BELOW:
        scores[UNKNOWN] = max(scores[UNKNOWN], UNKNOWN_FLOOR)
    total = sum(scores.values()) or 1.0
    return sorted(((c, s / total) for c, s in scores.items()), key=itemgetter(1), reverse=True)


def text_result(text: str) -> Result:
    """A failed command's result holding only a raw error text (CLI, simulator)."""
    return Result(command="", host="", exit_code=1, stdout="", stderr=text, duration=0.0)


def failure_from(step: str, result: Result, analysis: Analysis) -> Failure:
    return Failure(
        step=step,
        result=result,
        error_class=analysis.error_class,
        signature=analysis.signature,
        details=dict(analysis.details),
    )


def text_of(result: Result) -> str:
    """What detection reads of a result: its output, or the command when it printed nothing."""
    return result.output or result.command


class Detector:
    """Rules and classifier together, with the latest texts' analyses cached."""

    def __init__(self, rules: RuleSet, classifier: TextClassifier) -> None:
        self.rules = rules
        self.classifier = classifier
        self._cache: dict[str, Analysis] = {}
        self._causes: dict[str, str] = {}

    def analyze_many(self, texts: Sequence[str]) -> list[Analysis]:
        """Signature, rule hits, class scores and details of many texts (batched classifier;
        the analyses are kept for the detection that follows, as many as the cache holds)."""
        probs = self.classifier.predict_proba(list(texts)) if texts else []
        out = []
        for text, p in zip(texts, probs, strict=True):
            hits = self.rules.match(text)
            out.append(
                Analysis(
                    signature=signature_of(text),
                    hits=hits,
                    class_scores=combine(self.rules.class_scores(hits), p),
                    details=self.rules.details(text, hits),
                )
            )
            if len(self._cache) < ANALYSIS_CACHE_SIZE:
                self._cache[text] = out[-1]
        return out

    def analyze(self, text: str) -> Analysis:
        cached = self._cache.get(text)
        if cached is None:
            cached = self.analyze_many([text])[0]
            if len(self._cache) > ANALYSIS_CACHE_SIZE:
                self._cache.clear()
            self._cache[text] = cached
        return cached

    def detect(self, step: str, result: Result) -> Failure:
        return failure_from(step, result, self.analyze(text_of(result)))

    def cause(self, signature: str, context: Mapping[str, str]) -> str:
        """What a failure's cause is known by within its class and step: the rules its
        signature matches, the details the signature still names (a service, command, package)
        and the tool that printed it. Two failures of one class with different keys are taken
        to be different causes."""
        key = self._causes.get(signature)
        if key is None:
            hits = self.rules.match(signature)
            details = self.rules.details(signature, hits, CAUSE_DETAILS)
            parts = sorted({f"rule={h.rule}" for h in hits})
            parts += [
                f"{k}={details[k]}"
                for k in CAUSE_DETAILS
                if details.get(k) and "<" not in details[k]
            ]
            key = ",".join(parts)
            if len(self._causes) > CAUSE_CACHE_SIZE:
                self._causes.clear()
            self._causes[signature] = key
        tool = context.get("tool", "")
        return f"{key},tool={tool}" if tool else key
