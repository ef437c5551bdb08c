"""A third-party module imported the first time one of its names is used.

A deployment that never fails never classifies an error, so the numerical stack behind the
classifier (numpy) need not be loaded by every run. A module that needs it only in its
functions writes::

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy_module("numpy")

and ``np.log(...)`` imports numpy on first use (through the import system, so two threads using
it at once both get the fully imported module).
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for the module ``name`` until one of its attributes is read."""

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # later reads find the names directly
        return getattr(module, attr)


def lazy_module(name: str) -> Any:
    """A stand-in for the module ``name``, imported when one of its names is first used."""
    return LazyModule(name)
