"""A generated knowledge base: weeks of deployments, their failures and the recoveries tried.

Everything goes through the public :class:`~aideploy.knowledge.store.KnowledgeBase` recording
calls (``start_deployment``, ``record_step_run``, ``record_attempt``, ``finish_deployment``),
with explicit times, so the history looks like what the executor writes. The simulation is
seeded and deterministic:

- every error class has a few candidate strategies, each with its own chance of recovering;
- the chance that the best strategy is tried first grows from ``learn_from`` to ``learn_to``
  over the generated period (the ranker learning), so the first-try recovery rate per week
  improves over time;
- a deployment whose failure no strategy recovers ends ``failed``; the newest one is left
  ``running`` (no end time), as an interrupted deployment would be.

Usage: ``generate_kb(tmp_path / "kb.db")``, or ``copy_of_generated_kb(tmp_path)`` for a copy of
one KB generated once per test process (generating writes about 1,300 short transactions: a few
seconds on tmpfs, more on a slow disk).
"""

from __future__ import annotations

import atexit
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from aideploy.knowledge.store import KnowledgeBase

START = datetime(2025, 3, 3, 8, 0)  # a Monday
PROFILES = (("production", 0.4), ("staging", 0.35), ("development", 0.25))
HOSTS = {
    "production": ("web1.example.com", "web2.example.com"),
    "staging": ("staging.example.com",),
    "development": ("dev.example.com",),
}
STEPS = (
    "validate_server",
    "install_dependencies",
    "handle_nodejs_conflicts",
    "setup_database",
    "configure_backend",
    "configure_frontend",
    "setup_webserver",
    "final_verification",
)


@dataclass(frozen=True)
class ErrorKind:
    error_class: str
    step: str
    texts: tuple[str, ...]
    #: (strategy, chance that it recovers), best first
    strategies: tuple[tuple[str, float], ...]
    weight: float


KINDS: tuple[ErrorKind, ...] = (
    ErrorKind(
        "apt_lock",
        "install_dependencies",
        (
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process {n} "
            "(unattended-upgr)",
            "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is "
            "another process using it?",
        ),
        (("wait_for_apt_lock", 0.93), ("dpkg_repair", 0.3), ("retry_with_backoff", 0.2)),
        3.0,
    ),
    ErrorKind(
        "nodejs_conflict",
        "handle_nodejs_conflicts",
        (
            "dpkg: error processing archive /var/cache/apt/archives/nodejs_{n}.deb: trying to "
            "overwrite '/usr/include/node/common.gypi', which is also in package libnode-dev",
        ),
        (("nodejs_clean_reinstall", 0.88), ("dpkg_repair", 0.2)),
        2.0,
    ),
    ErrorKind(
        "port_in_use",
        "final_verification",
        ("[ERROR] Connection in use: ('127.0.0.1', {port})", "bind() to 0.0.0.0:{port} failed"),
        (("free_port", 0.92), ("restart_service", 0.3)),
        2.0,
    ),
    ErrorKind(
        "database_connection",
        "setup_database",
        (
            'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
            "failed: No such file or directory <is the server running?>",
            'FATAL: role "app{n}" does not exist',
        ),
        (("start_service", 0.87), ("database_create_role", 0.35), ("restart_service", 0.25)),
        2.0,
    ),
    ErrorKind(
        "out_of_memory",
        "configure_frontend",
        (
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            "npm ERR! code ELIFECYCLE errno 137 (killed after {n} s)",
        ),
        (("limit_build_memory", 0.85), ("add_swap", 0.4)),
        1.5,
    ),
    ErrorKind(
        "disk_full",
        "configure_backend",
        ("OSError: [Errno 28] No space left on device: '/opt/app/releases/{n}'",),
        (("cleanup_disk", 0.8), ("retry_with_backoff", 0.05)),
        0.7,
    ),
    ErrorKind(
        "network_timeout",
        "install_dependencies",
        ("pip._vendor.urllib3.exceptions.ReadTimeoutError: Read timed out. (read timeout={n})",),
        (("retry_with_backoff", 0.8), ("dns_fallback_resolver", 0.2)),
        1.0,
    ),
)


@dataclass
class Generated:
    """What was written, for tests to compare with."""

    path: Path
    deployments: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    attempts: int = 0
    first: datetime = START
    last: datetime = START
    classes: dict[str, int] = field(default_factory=dict)


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in weighted)
    x = rng.uniform(0, total)
    for name, w in weighted:
        x -= w
        if x <= 0:
            return name
    return weighted[-1][0]


def _order(
    rng: random.Random, strategies: tuple[tuple[str, float], ...], learned: float
) -> list[tuple[str, float]]:
    """The order the strategies are tried in: the best first with probability ``learned``."""
    rest = list(strategies)
    if rng.random() < learned:
        return rest
    rng.shuffle(rest)
    if len(rest) > 1 and rest[0] == strategies[0]:
        rest[0], rest[1] = rest[1], rest[0]
    return rest


def generate_kb(
    path: Path | str,
    *,
    deployments: int = 300,
    weeks: int = 8,
    seed: int = 7,
    learn_from: float = 0.0,
    learn_to: float = 0.95,
) -> Generated:
    """Fill a fresh KB at ``path`` with a simulated history; return what was written."""
    rng = random.Random(seed)
    out = Generated(path=Path(path))
    span = timedelta(weeks=weeks).total_seconds()
    kinds = tuple((k.error_class, k.weight) for k in KINDS)
    by_class = {k.error_class: k for k in KINDS}
    with KnowledgeBase.open(path) as kb:
        for i in range(deployments):
            progress = i / max(deployments - 1, 1)
            started = START + timedelta(seconds=progress * span * 0.98 + rng.uniform(0, 3600 * 6))
            profile = _pick(rng, PROFILES)
            host = rng.choice(HOSTS[profile])
            dep_id = f"gen-{i:04d}"
            kb.start_deployment(dep_id, profile, host, "stack", at=started)
            clock = started + timedelta(seconds=rng.uniform(20, 60))
            failures = rng.choices((0, 1, 2, 3), weights=(0.45, 0.35, 0.15, 0.05))[0]
            learned = learn_from + (learn_to - learn_from) * progress
            ok = True
            for _ in range(failures):
                kind = by_class[_pick(rng, kinds)]
                text = rng.choice(kind.texts).format(
                    n=rng.randint(100, 99999), port=rng.choice((8000, 8001, 5432, 80))
                )
                out.classes[kind.error_class] = out.classes.get(kind.error_class, 0) + 1
                recovered = False
                for n, (strategy, chance) in enumerate(_order(rng, kind.strategies, learned), 1):
                    run_time = rng.uniform(2, 40)
                    kb.record_step_run(dep_id, kind.step, n, 1, run_time, text, False, at=clock)
                    clock += timedelta(seconds=run_time)
                    duration = rng.uniform(1, 90)
                    outcome = "recovered" if rng.random() < chance else "failed"
                    if rng.random() < 0.03:
                        outcome = "skipped"  # not approved: nothing ran
                        duration = 0.0
                    kb.record_attempt(
                        dep_id,
                        text,
                        kind.error_class,
                        strategy,
                        kind.step,
                        outcome,
                        duration,
                        "ranker" if n == 1 and progress > 0.2 else "rule",
                        {"profile": profile},
                        at=clock,
                    )
                    out.attempts += 1
                    clock += timedelta(seconds=duration)
                    if outcome == "recovered":
                        recovered = True
                        break
                if not recovered:
                    ok = False
                    break
            # the deploy itself gets a little faster as caches warm up
            clock += timedelta(seconds=rng.uniform(240, 600) * (1.2 - 0.4 * progress))
            out.deployments += 1
            out.last = started
            if i == deployments - 1:
                out.running += 1  # interrupted: never finished
                continue
            status = "succeeded" if ok else "failed"
            kb.finish_deployment(dep_id, status, at=clock)
            if ok:
                out.succeeded += 1
            else:
                out.failed += 1
    return out


_CACHE: dict[str, Generated] = {}


def _scratch_dir() -> Path:
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > 256 << 20 else None
    try:
        folder = Path(tempfile.mkdtemp(prefix="aideploy-kbgen-", dir=base))
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="aideploy-kbgen-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def copy_of_generated_kb(folder: Path, name: str = "kb.db") -> Generated:
    """A copy, in ``folder``, of the default generated KB (generated once per process)."""
    made = _CACHE.get("default")
    if made is None:
        made = _CACHE["default"] = generate_kb(_scratch_dir() / "kb.db")
    target = Path(folder) / name
    for suffix in ("", "-wal", "-shm"):
        source = made.path.with_name(made.path.name + suffix)
        if source.exists():
            shutil.copyfile(source, target.with_name(target.name + suffix))
    copy = Generated(**{**made.__dict__, "path": target})
    copy.classes = dict(made.classes)
    return copy


if __name__ == "__main__":  # pragma: no cover - by hand: python -m tests.support.kbgen FILE
    import sys

    made = generate_kb(sys.argv[1] if len(sys.argv) > 1 else "generated-kb.db")
    print(
        f"{made.path}: {made.deployments} deployments, {made.attempts} attempts, "
        f"{made.succeeded} succeeded, {made.failed} failed"
    )
