"""The frozen value a command run produces: what is stored, shown and detected on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """Outcome of one command on one host.

    ``stdout``/``stderr`` are bounded tails (secrets redacted), never the full stream.
    """

    command: str
    host: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def output(self) -> str:
        """stdout and stderr tails together, stderr last (errors usually live there)."""
        parts = [p for p in (self.stdout, self.stderr) if p]
        return "\n".join(parts)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.splitlines()[-lines:])
