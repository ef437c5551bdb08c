"""Sharing knowledge: export a KB to versioned JSON Lines, import one back (see docs/kb-format.md).

Export redacts everything on its way out: secrets always, and unless ``keep_hosts`` the
deployments' host names, private IP addresses and private host names (``*.internal``, ``*.local``,
...) in every text and context value; host names and deployment ids become stable pseudonyms.

Import is all-or-nothing and idempotent: every line is validated before anything is written (the
first bad line rejects the file with its line number), the rows go in one transaction, and every
record has a stable id (given in the file or the hash of its content) so importing a file twice
adds nothing the second time. Imported strategies that carry shell commands are stored untrusted
and never run until ``aideploy learn trust NAME``; imported patterns must pass the regex safety
check; imported outcomes count with a reduced weight and ``decided_by="imported"``.

The modules, in the order a record goes through them:

- :mod:`.schema`: the format's constants, limits and record types;
- :mod:`.scrub` and :mod:`.export`: redaction and the export;
- :mod:`.load` and :mod:`.validate`: reading a file, the header, each record's checks;
- :mod:`.importer`, :mod:`.bulk`, :mod:`.encounters` and :mod:`.sql`: the import's one
  transaction, its steps, the failures' encounter numbers, and the inserts themselves.
"""

from aideploy.knowledge.exchange.bulk import ImportSummary
from aideploy.knowledge.exchange.export import export_kb, iter_export
from aideploy.knowledge.exchange.importer import DEFAULT_IMPORT_WEIGHT, import_kb
from aideploy.knowledge.exchange.load import parse_lines
from aideploy.knowledge.exchange.schema import (
    FORMAT,
    MAX_ENCOUNTER,
    MAX_LINE_CHARS,
    RECORD_TYPES,
    VERSION,
)
from aideploy.knowledge.exchange.scrub import HOST, IP, Scrubber
from aideploy.knowledge.exchange.validate import content_id

__all__ = [
    "DEFAULT_IMPORT_WEIGHT",
    "FORMAT",
    "HOST",
    "IP",
    "MAX_ENCOUNTER",
    "MAX_LINE_CHARS",
    "RECORD_TYPES",
    "VERSION",
    "ImportSummary",
    "Scrubber",
    "content_id",
    "export_kb",
    "import_kb",
    "iter_export",
    "parse_lines",
]
