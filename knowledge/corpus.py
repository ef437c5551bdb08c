"""The bundled labelled corpus of real error outputs (``aideploy.datasets``).

``errors.jsonl`` holds real outputs with their public source; ``synthetic.jsonl`` (optional)
holds generated variants marked ``"synthetic": true``. Each line:
``{"id", "error_class", "text", "source", "tool", "fix", "strategy", "split", "synthetic"}``.
The ``test`` split is held out: nothing that builds rules or models may read it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aideploy.core.errors import ConfigError
from aideploy.knowledge.classes import ERROR_CLASSES

BUNDLED_FILES = ("errors.jsonl", "synthetic.jsonl")


@dataclass(frozen=True)
class Example:
    id: str
    error_class: str
    text: str
    strategy: str = ""
    split: str = "train"
    synthetic: bool = False
    tool: str = ""
    source: str = ""
    fix: str = ""


def _parse(line: str, where: str) -> Example | None:
    line = line.strip()
    if not line:
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(raw, dict) or "text" not in raw or "error_class" not in raw:
        raise ConfigError(f"{where}: needs 'text' and 'error_class'")
    cls = str(raw["error_class"])
    if cls not in ERROR_CLASSES:
        return None
    strategy = raw.get("strategy") or ""
    if isinstance(strategy, list):
        strategy = strategy[0] if strategy else ""
    return Example(
        id=str(raw.get("id", where)),
        error_class=cls,
        text=str(raw["text"]),
        strategy=str(strategy),
        split=str(raw.get("split", "train")),
        synthetic=bool(raw.get("synthetic", False)),
        tool=str(raw.get("tool", "") or ""),
        source=str(raw.get("source", "") or ""),
        fix=str(raw.get("fix", "") or ""),
    )


def read_examples(lines: Iterable[str], name: str = "<corpus>") -> Iterator[Example]:
    for n, line in enumerate(lines, 1):
        ex = _parse(line, f"{name}:{n}")
        if ex is not None:
            yield ex


def load_file(path: str | Path) -> list[Example]:
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        return list(read_examples(fh, p.name))


def load_bundled() -> list[Example]:
    """Every example shipped in ``aideploy.datasets`` (missing files are skipped)."""
    out: list[Example] = []
    root = resources.files("aideploy.datasets")
    for name in BUNDLED_FILES:
        res = root.joinpath(name)
        if not res.is_file():
            continue
        text = res.read_text(encoding="utf-8")
        out.extend(read_examples(text.splitlines(), name))
    return out


def train_examples(examples: Iterable[Example] | None = None) -> list[Example]:
    """The examples models and rules may learn from: train split plus synthetic ones."""
    pool = load_bundled() if examples is None else examples
    return [e for e in pool if e.split != "test"]


def heldout_examples(examples: Iterable[Example] | None = None) -> list[Example]:
    """The held-out real examples (evaluation only)."""
    pool = load_bundled() if examples is None else examples
    return [e for e in pool if e.split == "test" and not e.synthetic]
