"""Host ranges in inventory names: ``web[01:03]`` is web01, web02, web03; ``db-[a:c]`` is db-a,
db-b, db-c; ``node[0:10:5]`` steps by 5. A name may hold several ranges (every combination)."""

from __future__ import annotations

import re
import string

from aideploy.core.errors import ConfigError

_RANGE = re.compile(r"\[([^\]:\[]*):([^\]:\[]*)(?::([^\]:\[]*))?\]")

#: a range may not expand to more hosts than this (a typo such as [1:999999] is refused)
MAX_HOSTS = 10_000


def expand(name: str) -> list[str]:
    """Every host name ``name`` stands for (itself when it has no range)."""
    found = _RANGE.search(name)
    if found is None:
        return [name]
    start, end, step_text = found.group(1), found.group(2), found.group(3)
    step = _step(name, step_text)
    head, tail = name[: found.start()], name[found.end() :]
    items = _items(name, start, end, step)
    names = [head + item + rest for item in items for rest in expand(tail)]
    if len(names) > MAX_HOSTS:
        raise ConfigError(f"host range {name!r} expands to more than {MAX_HOSTS} hosts")
    return names


def _step(name: str, text: str | None) -> int:
    if text is None or text == "":
        return 1
    if not text.isdigit() or int(text) == 0:
        raise ConfigError(f"host range {name!r}: the step must be a positive number")
    return int(text)


def _items(name: str, start: str, end: str, step: int) -> list[str]:
    if start.isdigit() and end.isdigit():
        low, high = int(start), int(end)
        if low > high:
            raise ConfigError(f"host range {name!r}: {start} is after {end}")
        if high - low + 1 > MAX_HOSTS * step:
            raise ConfigError(f"host range {name!r} expands to more than {MAX_HOSTS} hosts")
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        return [str(n).zfill(width) for n in range(low, high + 1, step)]
    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        low, high = letters.index(start), letters.index(end)
        if low > high:
            raise ConfigError(f"host range {name!r}: {start} is after {end}")
        return [letters[i] for i in range(low, high + 1, step)]
    raise ConfigError(f"host range {name!r}: expected [START:END] with two numbers or two letters")
