"""What one controller costs per host: a simulated fleet run of N hosts (default 500) through the
real fleet code path, with a connector that replays recorded per-command timings and outputs.

The path is the one ``aideploy deploy --inventory`` takes: an inventory file is loaded, hosts are
selected with a ``--limit`` pattern, :func:`aideploy.services.fleet.new_run` and
:func:`~aideploy.services.fleet.run_fleet` deploy them ``--forks`` at a time, each host with its
own deployment state, its host lock, its log and the run's one shared knowledge base and ranker.
Only the connector differs: instead of SSH it replays, command by command, what the plan
``benchmarks/data/fleet_scale_plan.toml`` did on a real host (duration, output, exit code). That
plan fails twice per host with a real network timeout and recovers, so every host writes
recovery outcomes to the knowledge base.

``record`` runs the plan once on a real throwaway sshd host on loopback (tests/support/sshd.py)
and stores the timings in ``benchmarks/data/fleet_scale_timings.json``; ``run`` (the default)
replays them. Each (N, forks) is measured in a process of its own, so the peak RSS is that
run's: controller wall time, CPU seconds per host, peak RSS per host above the process's size
before the run, the most threads and open file descriptors seen (sampled every 20 ms), and the
knowledge base's write rate (rows written per second of the run).

Usage: python benchmarks/fleet_scale.py [run] [--hosts 50,200,500] [--forks 10,50]
       [--kb URL] [--markdown]
       python benchmarks/fleet_scale.py record
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "data"
PLAN = DATA / "fleet_scale_plan.toml"
TIMINGS = DATA / "fleet_scale_timings.json"
#: what stands for the host's directory in a recorded command
ROOT_MARK = "{ROOT}"
#: the recorded entry that holds how long connecting took
CONNECT = "(connect)"


@dataclass(frozen=True)
class Recorded:
    """One command as it ran on the real host."""

    seconds: float
    exit_code: int
    stdout: str
    stderr: str


def _key(command: str, root: str) -> str:
    return command.replace(root, ROOT_MARK)


# --- replay ---------------------------------------------------------------------------------


class ReplayProcess:
    def __init__(self, recorded: Recorded | None) -> None:
        from aideploy.engine.connectors.base import Chunk

        self._ready = time.monotonic() + (recorded.seconds if recorded else 0.0)
        self._code = recorded.exit_code if recorded else 0
        chunks = []
        if recorded and recorded.stdout:
            chunks.append(Chunk("stdout", recorded.stdout.encode()))
        if recorded and recorded.stderr:
            chunks.append(Chunk("stderr", recorded.stderr.encode()))
        self._chunks = chunks

    def read(self, timeout: float) -> list[Any]:
        wait = self._ready - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            if time.monotonic() < self._ready:
                return []
        chunks, self._chunks = self._chunks, []
        return chunks

    def write(self, data: bytes) -> None:
        pass

    def done(self) -> bool:
        return not self._chunks and time.monotonic() >= self._ready

    def exit_code(self) -> int | None:
        return self._code

    def kill(self) -> None:
        self._ready = 0.0

    def close(self) -> None:
        pass

    def limit(self, seconds: float | None) -> None:
        pass


def replay_connector_class() -> type:
    from aideploy.engine.connectors.base import Connector

    class ReplayConnector(Connector):
        """Replays what each command did on the recorded host: the k-th run of a command gets
        the k-th recorded result (the last one once they run out); a command never recorded
        succeeds at once with no output (and is counted)."""

        env_in_command = True
        misses = 0

        def __init__(self, host: str, root: str, timings: Mapping[str, list[Recorded]]) -> None:
            self.host = host
            self._root = root
            self._timings = timings
            self._seen: dict[str, int] = {}

        def connect(self) -> None:
            if CONNECT in self._timings:
                time.sleep(self._timings[CONNECT][0].seconds)

        def close(self) -> None:
            pass

        def start(self, command: str, *, env: Mapping[str, str] | None = None) -> Any:
            key = _key(command, self._root)
            found = self._timings.get(key)
            if not found:
                type(self).misses += 1
                return ReplayProcess(None)
            count = self._seen.get(key, 0)
            self._seen[key] = count + 1
            return ReplayProcess(found[min(count, len(found) - 1)])

        def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
            pass

        def get_file(self, remote: str, local: Path) -> None:
            local.write_bytes(b"")

        def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
            pass

    return ReplayConnector


# --- the run --------------------------------------------------------------------------------


def _inventory(work: Path, n: int, server: Any | None) -> Path:
    """N hosts in group ``scale`` (plus one host outside it, left out by the selection)."""
    lines = []
    for index in range(1, n + 1):
        if server is not None:
            where = f'host = "{server.host}"\nport = {server.port}\nuser = "{server.user}"\n'
            where += f'key_file = "{server.client_key}"\n'
        else:  # never connected to: the replay connector stands in for SSH
            where = f'host = "10.{index // 65536}.{index // 256 % 256}.{index % 256}"\n'
        lines.append(f'[hosts.h{index}]\n{where}vars = {{ ROOT = "{work}/roots/h{index}" }}\n')
    lines.append('[hosts.elsewhere]\nhost = "10.255.255.254"\n')
    lines.append("[groups.scale]\nhosts = [" + ", ".join(f'"h{i}"' for i in range(1, n + 1)))
    lines.append("]\n")
    path = work / "fleet.toml"
    path.write_text("".join(lines))
    return path


class Sampler:
    """The most threads and open file descriptors of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        self.threads = 0
        self.fds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.threads = max(self.threads, threading.active_count())
            self.fds = max(self.fds, len(os.listdir("/proc/self/fd")))
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _kb_rows(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    if "://" not in url:
        url = f"sqlite:///{url}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return {
                table: int(db.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in ("deployments", "step_runs", "error_signatures", "recovery_attempts")
            }
    finally:
        engine.dispose()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one(n: int, forks: int, kb: str | None, record_to: Path | None = None) -> dict[str, Any]:
    """One run of ``n`` hosts at ``forks``; its figures (``record_to``: run on one real sshd
    host instead and store each command's timing there)."""
    work = Path(tempfile.mkdtemp(prefix="aideploy-fleet-scale."))
    os.environ["AIDEPLOY_HOME"] = str(work / "home")
    kb_url = kb or str(work / "kb.db")
    from aideploy.services import compose, fleet
    from aideploy.services.config import parse_config
    from aideploy.services.inventory import load_inventory, select_hosts

    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        server = None
        settings: dict[str, Any] = {"deployment": {"retry_delay": 0, "max_retries": 3}}
        if record_to is not None:
            from tests.support.sshd import running_sshd

            server = stack.enter_context(running_sshd())
            known = work / "known_hosts"
            known.write_text(server.known_hosts_lines())
            settings["ssh"] = {"known_hosts": str(known)}
        config = parse_config(settings, "bench")
        inventory_path = _inventory(work, n, server)
        inventory = load_inventory(inventory_path)
        hosts = select_hosts(inventory, "scale")
        request = fleet.FleetRequest(
            plan_spec=str(PLAN),
            config=config,
            rollout=fleet.Rollout(forks=forks),
            env={},
            kb=kb_url,
        )
        recorded: dict[str, list[dict[str, Any]]] = {}
        real_build = compose.build_connector
        if record_to is not None:
            root = str(work / "roots" / "h1")
            compose.build_connector = lambda target, **kw: _Recording(  # type: ignore[assignment]
                real_build(target, **kw), root, recorded
            )
        else:
            timings = {
                key: [Recorded(**r) for r in runs]
                for key, runs in json.loads(TIMINGS.read_text())["commands"].items()
            }
            replay = replay_connector_class()
            roots = {
                fleet.host_target(config, inventory, h).hostname: str(work / "roots" / h)
                for h in hosts
            }
            compose.build_connector = lambda target, **kw: replay(  # type: ignore[assignment]
                target.hostname, roots[target.hostname], timings
            )
        before_rss = _rss_kib()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        with Sampler() as sampler:
            run = fleet.new_run(request, inventory, hosts, selection={"limit": "scale"})
            run.save()
            final = fleet.run_fleet(run, request, lambda host, event, **data: None)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        compose.build_connector = real_build
        results: dict[str, int] = {}
        for host in final.hosts:
            results[host.result.value] = results.get(host.result.value, 0) + 1
        rows = _kb_rows(kb_url)
        if record_to is not None:
            record_to.write_text(
                json.dumps(
                    {"plan": PLAN.name, "host": "throwaway sshd on loopback", "commands": recorded},
                    indent=1,
                    sort_keys=True,
                )
                + "\n"
            )
        cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
        written = rows["step_runs"] + rows["recovery_attempts"] + rows["deployments"]
        return {
            "hosts": n,
            "forks": forks,
            "results": results,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_ms_per_host": round(1000 * cpu / n, 1),
            "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
            "rss_kib_per_host": round((after.ru_maxrss - before_rss) / n, 1),
            "threads": sampler.threads,
            "fds": sampler.fds,
            "kb_rows": rows,
            "kb_rows_per_s": round(written / wall, 1),
            "unreplayed_commands": 0 if record_to else replay.misses,
        }


class _Recording:
    """A real connector whose every command's duration, output and exit code is kept."""

    def __init__(self, inner: Any, root: str, into: dict[str, list[dict[str, Any]]]) -> None:
        self._inner = inner
        self._root = root
        self._into = into
        self.host = inner.host
        self.env_in_command = inner.env_in_command

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def connect(self) -> None:
        started = time.monotonic()
        self._inner.connect()
        self._into.setdefault(CONNECT, []).append(
            {"seconds": round(time.monotonic() - started, 4), "exit_code": 0}
            | {"stdout": "", "stderr": ""}
        )

    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> Any:
        return _RecordingProcess(self._inner.start(command, env=env), self, command)


class _RecordingProcess:
    def __init__(self, inner: Any, owner: _Recording, command: str) -> None:
        self._inner = inner
        self._owner = owner
        self._command = command
        self._started = time.monotonic()
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._kept = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, timeout: float) -> list[Any]:
        chunks = self._inner.read(timeout)
        for chunk in chunks:
            (self._out if chunk.stream == "stdout" else self._err).append(chunk.data)
        return list(chunks)

    def done(self) -> bool:
        finished = bool(self._inner.done())
        if finished and not self._kept:
            self._kept = True
            entry = {
                "seconds": round(time.monotonic() - self._started, 4),
                "exit_code": self._inner.exit_code() or 0,
                "stdout": _key(b"".join(self._out).decode(errors="replace"), self._owner._root),
                "stderr": _key(b"".join(self._err).decode(errors="replace"), self._owner._root),
            }
            key = _key(self._command, self._owner._root)
            self._owner._into.setdefault(key, []).append(entry)
        return finished


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import logging

    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("run", "record", "one"), default="run")
    parser.add_argument("--hosts", default="50,200,500")
    parser.add_argument("--forks", default="10,50")
    parser.add_argument("--kb", default=None, help="Knowledge base URL (default: a SQLite file).")
    parser.add_argument("--markdown", action="store_true", help="Print the table as Markdown.")
    args = parser.parse_args()
    if args.mode == "record":
        with _quiet():
            figures = one(1, 1, None, record_to=TIMINGS)
        print(f"recorded {TIMINGS.relative_to(ROOT)}: {figures['results']}")
        return
    if args.mode == "one":
        with _quiet():
            print(json.dumps(one(int(args.hosts), int(args.forks), args.kb)))
        return
    rows = []
    for n in (int(x) for x in args.hosts.split(",")):
        for forks in (int(x) for x in args.forks.split(",")):
            cmd = [sys.executable, __file__, "one", "--hosts", str(n), "--forks", str(forks)]
            if args.kb:
                cmd += ["--kb", args.kb]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"N={n} forks={forks} failed: {proc.stderr[-2000:]}")
            row = json.loads(proc.stdout.splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.markdown:
        print(
            "\n| hosts | forks | ok | wall (s) | CPU (s) | CPU/host (ms) | peak RSS (MiB) "
            "| RSS/host (KiB) | threads | fds | KB rows/s |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['hosts']} | {r['forks']} | {r['results'].get('ok', 0)} | {r['wall_s']} "
                f"| {r['cpu_s']} | {r['cpu_ms_per_host']} | {r['peak_rss_mib']} "
                f"| {r['rss_kib_per_host']} | {r['threads']} | {r['fds']} "
                f"| {r['kb_rows_per_s']} |"
            )


if __name__ == "__main__":
    main()
