"""Holding millions of small objects at once, as an export and an import do."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting goes on).

    An import holds every validated record (millions of small objects) until it commits, an
    export every rendered line until the count is known; each allocation burst would otherwise
    make the collector walk all of them again and again, which costs more than the work itself.
    Any cycle made meanwhile is collected once it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
