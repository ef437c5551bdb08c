"""aideploy: deploy web applications over SSH and learn which recovery fixes which failure."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
