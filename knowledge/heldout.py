"""The held-out evaluation split: real test texts with their near-copies in training removed.

The corpus' ``split`` field keeps every source on one side, but the same error line is often
pasted into several threads: a test text that is a near-copy of a training text measures
memory, not generalisation. :func:`heldout_split` drops those test texts (rapidfuzz similarity
of the normalised texts at or above :data:`NEAR_DUPLICATE_SCORE`) and says how many it dropped.
The classification benchmark and the learning benchmarks use this one split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from aideploy.knowledge.classifier import classifier_text
from aideploy.knowledge.corpus import Example, load_bundled

#: rapidfuzz ``ratio`` (0-100) of the normalised texts from which two texts count as one
NEAR_DUPLICATE_SCORE = 85.0


@dataclass(frozen=True)
class HeldoutSplit:
    """Training examples, the held-out real examples kept, and the near-copies dropped."""

    train: tuple[Example, ...]
    test: tuple[Example, ...]
    removed: tuple[Example, ...]


def normalised(text: str) -> str:
    """What near-copies are compared on: the classifier's view (lower case, numbers folded)."""
    return classifier_text(text).strip()


def nearest_scores(texts: Sequence[str], against: Sequence[str]) -> list[float]:
    """For each text, its highest similarity (0-100) to any text of ``against``."""
    if not texts or not against:
        return [0.0] * len(texts)
    matrix = cdist(
        [normalised(t) for t in texts],
        [normalised(t) for t in against],
        scorer=fuzz.ratio,
        workers=1,
    )
    return [float(row.max()) for row in matrix]


def heldout_split(
    examples: Iterable[Example] | None = None, *, threshold: float = NEAR_DUPLICATE_SCORE
) -> HeldoutSplit:
    """Train on everything outside the test split; test on the real test texts that are not
    near-copies of a training text."""
    pool = list(load_bundled() if examples is None else examples)
    train = tuple(e for e in pool if e.split != "test")
    candidates = [e for e in pool if e.split == "test" and not e.synthetic]
    scores = nearest_scores([e.text for e in candidates], [e.text for e in train])
    kept = tuple(e for e, s in zip(candidates, scores, strict=True) if s < threshold)
    removed = tuple(e for e, s in zip(candidates, scores, strict=True) if s >= threshold)
    return HeldoutSplit(train=train, test=kept, removed=removed)


def conflicting_labels(
    examples: Iterable[Example], *, threshold: float = NEAR_DUPLICATE_SCORE
) -> list[tuple[Example, Example]]:
    """Pairs of examples whose texts are the same or near-same but whose classes differ."""
    pool = list(examples)
    if len(pool) < 2:
        return []
    docs = [normalised(e.text) for e in pool]
    matrix = cdist(docs, docs, scorer=fuzz.ratio, workers=1)
    close = np.argwhere(np.triu(matrix >= threshold, k=1))
    return [(pool[i], pool[j]) for i, j in close if pool[i].error_class != pool[j].error_class]
