"""Import: a file validated in full (:mod:`.load`), then written in one transaction (:mod:`.bulk`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from aideploy.core.errors import ImportRejected, KnowledgeBaseError
from aideploy.core.redact import redact
from aideploy.knowledge.exchange import bulk, load
from aideploy.knowledge.exchange.bulk import ImportSummary
from aideploy.knowledge.exchange.classify import Classify, classify_unlabelled
from aideploy.knowledge.exchange.memory import no_cyclic_gc
from aideploy.knowledge.store import LOCAL_ORIGINS, KnowledgeBase

#: what an imported outcome counts for, against a local one (1.0)
DEFAULT_IMPORT_WEIGHT = 0.5
#: the longest source name an import stores as the origin of its records
MAX_SOURCE_CHARS = 255


def import_kb(
    kb: KnowledgeBase,
    source: str | os.PathLike[str] | IO[str],
    *,
    source_name: str | None = None,
    weight: float = DEFAULT_IMPORT_WEIGHT,
    classify: Classify | None = None,
) -> ImportSummary:
    """Import an export file into ``kb``: validated in full, then written in one transaction.

    ``source_name`` names the origin of the imported records (default: the file's name without
    its suffix, or "import" for a stream). With ``classify``, records that have no error class
    (or "unknown") get the class of their text (see :mod:`.classify`).
    """
    if not 0.0 < weight <= 1.0:
        raise KnowledgeBaseError("the import weight must be in (0, 1]")
    with no_cyclic_gc():
        parsed = load.read(source)
        if source_name:
            name = source_name
        elif hasattr(source, "read"):
            name = "import"
        else:
            name = Path(os.fspath(source)).stem
        name = redact(name)[:MAX_SOURCE_CHARS] or "import"
        if name in LOCAL_ORIGINS:
            raise ImportRejected(
                f"source name {name!r} is reserved for local knowledge; name the source "
                "(--source NAME)"
            )
        summary = ImportSummary(source=name, records=parsed.records)
        if classify is not None:
            summary.classified = classify_unlabelled(parsed, classify)
        with kb.writing(bulk=True) as conn:
            bulk.write(conn, parsed, summary, weight)
    return summary
