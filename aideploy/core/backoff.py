"""Exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before retry ``attempt`` (1-based): uniform in [base/2, min(cap, base * factor**(n-1))]."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        if self.base <= 0:
            return 0.0
        ceiling = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        low = min(self.base / 2, ceiling)
        return self.rng.uniform(low, ceiling)
