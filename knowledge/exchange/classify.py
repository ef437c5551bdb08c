"""Classify on import: records that arrive without an error class get one from their text.

A raw file (signatures and attempts without ``error_class``, or with "unknown") would otherwise
be filed under "unknown", where the ranker learns nothing class-wide from it. Each distinct
signature text is classified once; the attempts given a class this way say so in their context
(``"class_source": "classified"``), so a class that came from the file and one aideploy guessed
stay apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from aideploy.knowledge.classes import UNKNOWN
from aideploy.knowledge.exchange.schema import Parsed

#: what the import asks for: the error class of each of many texts, in order
Classify = Callable[[Sequence[str]], Sequence[str]]

#: the context key (and value) that marks a class given on import
CLASS_SOURCE = "class_source"
CLASSIFIED = "classified"


def classify_unlabelled(parsed: Parsed, classify: Classify) -> int:
    """Give the signatures and attempts of ``parsed`` whose class is unknown the class of their
    text; returns how many records got one."""
    texts = list(
        dict.fromkeys(
            [s.text for s in parsed.signatures if s.error_class == UNKNOWN]
            + [a.text for a in parsed.attempts if a.error_class == UNKNOWN]
        )
    )
    if not texts:
        return 0
    found = {text: cls for text, cls in zip(texts, classify(texts), strict=True) if cls != UNKNOWN}
    if not found:
        return 0
    changed = 0
    for i, sig in enumerate(parsed.signatures):
        cls = found.get(sig.text) if sig.error_class == UNKNOWN else None
        if cls:
            parsed.signatures[i] = msgspec.structs.replace(sig, error_class=cls)
            changed += 1
    # equal contexts are one object: each is marked once (the original kept for its id)
    marked: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for i, att in enumerate(parsed.attempts):
        cls = found.get(att.text) if att.error_class == UNKNOWN else None
        if not cls:
            continue
        pair = marked.get(id(att.context))
        if pair is None:
            pair = marked[id(att.context)] = (
                att.context,
                {**att.context, CLASS_SOURCE: CLASSIFIED},
            )
        parsed.attempts[i] = msgspec.structs.replace(att, error_class=cls, context=pair[1])
        changed += 1
    return changed
