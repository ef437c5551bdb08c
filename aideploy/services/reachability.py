"""Checking the hosts of an inventory: can each be reached, what is its host key's status, what
system does it run, how long does a command take. Hosts are checked in parallel."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aideploy.core.errors import (
    AideployError,
    ChangedHostKeyError,
    UnknownHostKeyError,
)
from aideploy.engine.runner import Runner
from aideploy.services import compose
from aideploy.services.target import Target

#: what prints the system's name (the first line that is not empty is kept)
OS_COMMAND = '. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"; uname -srm'


@dataclass(frozen=True)
class HostCheck:
    host: str
    address: str
    reachable: bool
    host_key: str  # "known" | "new (recorded)" | "unknown" | "changed" | "-" (not reached)
    os: str = ""
    connect_ms: float | None = None
    command_ms: float | None = None
    fingerprint: str | None = None
    error: str | None = None


def check_host(host: str, target: Target, timeout: float = 30.0) -> HostCheck:
    address = target.describe()
    connector = compose.build_connector(target, session=False)
    started = time.monotonic()
    try:
        connector.connect()
    except UnknownHostKeyError as exc:
        return HostCheck(host, address, False, "unknown", error=str(exc))
    except ChangedHostKeyError as exc:
        return HostCheck(host, address, False, "changed", error=str(exc))
    except AideployError as exc:
        return HostCheck(host, address, False, "-", error=str(exc))
    try:
        connected = time.monotonic()
        result = Runner(connector, timeout=timeout).run(OS_COMMAND)
        done = time.monotonic()
    except AideployError as exc:
        return HostCheck(host, address, False, "known", error=str(exc))
    finally:
        connector.close()
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return HostCheck(
        host,
        address,
        True,
        "known" if not target.accept_new_host_key else "known or recorded",
        os=lines[0] if lines else "?",
        connect_ms=round((connected - started) * 1000, 1),
        command_ms=round((done - connected) * 1000, 1),
        fingerprint=getattr(connector, "host_key_fingerprint", None),
        error=None if result.ok else f"test command failed: {result.tail(1)}",
    )


def check_hosts(
    targets: dict[str, Target],
    *,
    forks: int = 10,
    check: Callable[[str, Target], HostCheck] = check_host,
) -> list[HostCheck]:
    """Every host checked, ``forks`` at a time; the result keeps the order given."""
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(targets) or 1))) as pool:
        futures = [pool.submit(check, host, target) for host, target in targets.items()]
        return [future.result() for future in futures]
