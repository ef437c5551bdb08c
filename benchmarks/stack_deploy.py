"""The stack plan deploying the sample app into fresh throwaway hosts, timed.

(a) cold deploy: ``aideploy deploy --plan stack`` (the CLI, as a user runs it) into a fresh host;
(b) the same command again on that host with nothing changed: every done step is skipped;
(c) what aideploy adds over the same commands run by hand: a deploy through the library records
    every command (its text and environment) and every file it writes at the connector; the
    recording is then replayed on another fresh host through one plain paramiko connection
    (``exec_command`` per command, SFTP for the files), the floor a script typed by hand could
    reach. Both times run from "connect" to "last command done"; the CLI's own start-up
    (interpreter and imports) is measured apart. Each side's time is also split into the time
    inside its commands and file writes and the time outside them: the library's "outside" is
    aideploy's own work (connection and shell set-up, state saves, knowledge-base records,
    logging), a figure far less noisy than the difference of two wall times.

Fairness: pip and npm downloads dominate a cold deploy and vary from one run to the next. A
warm-up deploy (not counted) fills pip's cache; every counted host starts with a copy of it in
``/root/.cache/pip``, and npm's cache is this machine's ``/root/.npm`` (seen through the overlay),
so library and replay download the same nothing. Rounds alternate which of the two goes first,
and each round reports its own ratio; the figures to compare are the ratios, not the seconds.

Needs what the throwaway host needs (root, unshare, overlayfs, sshd). Usage:

    .venv/bin/python benchmarks/stack_deploy.py [--rounds 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aideploy.cli.demo import (
    REPO_INSIDE,
    SAMPLE_APP,
    DemoPaths,
    Ports,
    deploy_command,
    stack_settings,
    write_config,
)
from aideploy.engine.connectors.base import Chunk, Connector, Process
from aideploy.engine.logs import current_step
from aideploy.engine.throwaway import (
    AppRepo,
    ThrowawayHost,
    available,
    http_get,
    throwaway_host,
)
from aideploy.services import deploy
from aideploy.services.config import load_config
from aideploy.services.target import resolve_target

PIP_CACHE = "/root/.cache/pip"


# -- recording what a deploy runs ------------------------------------------------------------


@dataclass
class Recorded:
    kind: str  # "run" or "write"
    command: str = ""
    env: dict[str, str] = field(default_factory=dict)
    path: str = ""
    data: bytes = b""
    mode: int = 0o644
    seconds: float = 0.0  # from start to the process's close (runs) or the write's end
    step: str = field(default_factory=lambda: current_step.get() or "-")


class TimedProcess(Process):
    """A process that notes, in its record, the seconds from start to close."""

    def __init__(self, inner: Process, record: Recorded) -> None:
        self.inner = inner
        self.record = record
        self.started = time.monotonic()

    def read(self, timeout: float) -> list[Chunk]:
        return self.inner.read(timeout)

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def done(self) -> bool:
        return self.inner.done()

    def exit_code(self) -> int | None:
        return self.inner.exit_code()

    def kill(self) -> None:
        self.inner.kill()

    def close(self) -> None:
        self.inner.close()
        self.record.seconds = time.monotonic() - self.started


class RecordingConnector(Connector):
    """Passes everything to ``inner`` and keeps, in memory, what it was asked to run and write."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.host = inner.host
        self.env_in_command = inner.env_in_command
        self.log: list[Recorded] = []

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()

    def start(self, command: str, *, env: Mapping[str, str] | None = None) -> Process:
        record = Recorded("run", command=command, env=dict(env or {}))
        self.log.append(record)
        return TimedProcess(self.inner.start(command, env=env), record)

    def put_file(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        self.log.append(Recorded("write", path=remote, data=local.read_bytes(), mode=mode or 0o644))
        self.inner.put_file(local, remote, mode=mode)

    def get_file(self, remote: str, local: Path) -> None:
        self.inner.get_file(remote, local)

    def write_file(self, remote: str, data: bytes, *, mode: int = 0o644) -> None:
        record = Recorded("write", path=remote, data=data, mode=mode)
        self.log.append(record)
        started = time.monotonic()
        self.inner.write_file(remote, data, mode=mode)
        record.seconds = time.monotonic() - started


def library_deploy(
    paths: DemoPaths, host: ThrowawayHost, settings: dict[str, str], kb: Path
) -> tuple[float, list[Recorded]]:
    """One deploy through the library (no CLI start-up), recording; seconds and the recording.
    ``kb`` is kept from run to run, as a user's is (the warm-up creates its schema)."""
    config = load_config(paths.config)
    target = resolve_target(
        config,
        server=host.host,
        port=host.port,
        username=host.user,
        key_file=str(host.key_file),
    )
    request = deploy.DeployRequest(
        plan_spec="stack", target=target, config=config, env=settings, kb=str(kb)
    )
    state = deploy.new_state(request, deploy.prepare_plan("stack", settings, "dry"))
    state.save()
    recorders: list[RecordingConnector] = []

    def wrap(connector: Connector) -> Connector:
        recorders.append(RecordingConnector(connector))
        return recorders[-1]

    started = time.monotonic()
    final = deploy.run(request, state, deploy.Operator(wrap_connector=wrap))
    took = time.monotonic() - started
    assert final.status.value == "completed", final.reason
    return took, recorders[0].log


def per_step(recording: list[Recorded]) -> dict[str, float]:
    """Seconds inside commands and file writes, per step."""
    found: dict[str, float] = {}
    for item in recording:
        found[item.step] = found.get(item.step, 0.0) + item.seconds
    return found


# -- replaying it by hand --------------------------------------------------------------------


def replay(host: ThrowawayHost, recording: list[Recorded]) -> tuple[float, dict[str, float]]:
    """The recorded commands and file writes, in order, over one plain paramiko connection:
    wall seconds, and the seconds spent inside the commands and writes of each step."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(host.known_hosts))  # RejectPolicy for anything else
    started = time.monotonic()
    sock = socket.create_connection((host.host, host.port), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as aideploy's connector does
    client.connect(
        host.host,
        port=host.port,
        username=host.user,
        key_filename=str(host.key_file),
        allow_agent=False,
        look_for_keys=False,
        sock=sock,
    )
    sftp = client.open_sftp()
    inside: dict[str, float] = {}
    try:
        for item in recording:
            began = time.monotonic()
            if item.kind == "write":
                with sftp.open(item.path + ".tmp", "wb") as handle:
                    handle.write(item.data)
                sftp.chmod(item.path + ".tmp", item.mode)
                sftp.posix_rename(item.path + ".tmp", item.path)
                inside[item.step] = inside.get(item.step, 0.0) + time.monotonic() - began
                continue
            exports = "".join(f"export {k}={shlex.quote(v)}; " for k, v in item.env.items())
            _, stdout, stderr = client.exec_command(exports + item.command)
            stdout.channel.recv_exit_status()
            stdout.read()
            stderr.read()
            inside[item.step] = inside.get(item.step, 0.0) + time.monotonic() - began
    finally:
        sftp.close()
        client.close()
    took = time.monotonic() - started
    # the replay did deploy: the app answers through nginx on the recorded port
    port = next(r.env["HTTP_PORT"] for r in recording if "HTTP_PORT" in r.env)
    status, _ = http_get(f"http://localhost:{port}/api/health/")
    assert status == 200, status
    return took, inside


# -- hosts -------------------------------------------------------------------------------------


@dataclass
class Prepared:
    host: ThrowawayHost
    paths: DemoPaths
    settings: dict[str, str]


@dataclass
class Bench:
    work: Path
    pip_cache: Path | None = None
    counter: int = 0

    @property
    def kb(self) -> Path:
        return self.work / "knowledge.db"

    @contextlib.contextmanager
    def host(self) -> Iterator[Prepared]:
        """A fresh host with the sample app published, pip's cache copied in (once warm)."""
        self.counter += 1
        with throwaway_host() as host:
            paths = DemoPaths(self.work / f"run{self.counter}")
            write_config(paths, host)
            AppRepo.create(host, SAMPLE_APP, paths.repo, REPO_INSIDE)
            if self.pip_cache is not None:
                shutil.copytree(self.pip_cache, host.path(PIP_CACHE), dirs_exist_ok=True)
            yield Prepared(host, paths, stack_settings(REPO_INSIDE, Ports.free()))

    def keep_pip_cache(self, host: ThrowawayHost) -> None:
        inside = host.path(PIP_CACHE)
        if inside.is_dir():
            self.pip_cache = self.work / "pip-cache"
            shutil.copytree(inside, self.pip_cache, dirs_exist_ok=True)


def cli(prepared: Prepared, kb: Path) -> tuple[float, str]:
    command = deploy_command(prepared.paths, prepared.host, prepared.settings)
    command[command.index("--kb") + 1] = str(kb)
    env = {**os.environ, "AIDEPLOY_HOME": str(prepared.paths.home), "NO_COLOR": "1"}
    started = time.monotonic()
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"deploy failed ({done.returncode}): {done.stdout[-3000:]}")
    return took, done.stdout


def startup() -> float:
    """Median seconds for ``python -m aideploy deploy --help`` (interpreter + CLI imports)."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "aideploy", "deploy", "--help"], capture_output=True, check=True
        )
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    why = available()
    if why:
        sys.exit(f"throwaway host unavailable: {why}")
    results: dict[str, Any] = {"rounds": []}
    with tempfile.TemporaryDirectory(prefix="aideploy-bench.") as tmp:
        bench = Bench(Path(tmp))
        with bench.host() as prepared:
            took, recording = library_deploy(
                prepared.paths, prepared.host, prepared.settings, bench.kb
            )
            bench.keep_pip_cache(prepared.host)
        results["warmup_library_s"] = round(took, 2)
        runs = sum(r.kind == "run" for r in recording)
        writes = len(recording) - runs
        results["recorded"] = {"commands": runs, "file_writes": writes}
        print(
            f"warm-up (empty pip cache, not counted): {took:.1f}s; {runs} commands, {writes} files"
        )
        for number in range(1, args.rounds + 1):
            row: dict[str, float] = {}
            order = ("library", "replay") if number % 2 else ("replay", "library")
            for which in order:
                with bench.host() as prepared:
                    if which == "library":
                        row["library_s"], log = library_deploy(
                            prepared.paths, prepared.host, prepared.settings, bench.kb
                        )
                        steps_library = per_step(log)
                        row["library_in_commands_s"] = sum(steps_library.values())
                    else:
                        row["replay_s"], steps_replay = replay(prepared.host, recording)
                        row["replay_in_commands_s"] = sum(steps_replay.values())
            with bench.host() as prepared:
                row["cli_cold_s"], _ = cli(prepared, bench.kb)
                row["cli_second_s"], out = cli(prepared, bench.kb)
                skipped = sum("already done, skipped" in line for line in out.splitlines())
                row["second_skipped_steps"] = skipped
            row["overhead_ratio"] = row["library_s"] / row["replay_s"]
            # aideploy's own time: the deploy's wall time outside its commands and file writes
            row["library_between_s"] = row["library_s"] - row["library_in_commands_s"]
            row["replay_between_s"] = row["replay_s"] - row["replay_in_commands_s"]
            row["own_share"] = row["library_between_s"] / row["library_s"]
            results["rounds"].append({k: round(v, 3) for k, v in row.items()})
            results["rounds"][-1]["steps"] = {
                name: [round(steps_library.get(name, 0.0), 2), round(seconds, 2)]
                for name, seconds in steps_replay.items()
            }
            print(
                f"round {number} ({' then '.join(order)}): library {row['library_s']:.1f}s, "
                f"replay {row['replay_s']:.1f}s, ratio {row['overhead_ratio']:.3f}; "
                f"outside commands: library {row['library_between_s']:.2f}s "
                f"({row['own_share']:.1%}), replay {row['replay_between_s']:.2f}s; "
                f"CLI cold {row['cli_cold_s']:.1f}s, second {row['cli_second_s']:.2f}s "
                f"({skipped} steps skipped)"
            )
            print(
                "  inside commands per step, library/replay: "
                + ", ".join(
                    f"{name} {steps_library.get(name, 0.0):.1f}/{seconds:.1f}"
                    for name, seconds in steps_replay.items()
                    if max(seconds, steps_library.get(name, 0.0)) >= 0.5
                )
            )
    results["cli_startup_s"] = round(startup(), 3)
    rounds = results["rounds"]
    for key in (
        "library_s",
        "replay_s",
        "overhead_ratio",
        "library_between_s",
        "replay_between_s",
        "own_share",
        "cli_cold_s",
        "cli_second_s",
    ):
        results[f"median_{key}"] = round(statistics.median(r[key] for r in rounds), 3)
    print(
        f"\nmedian over {len(rounds)} rounds: cold CLI deploy {results['median_cli_cold_s']:.1f}s; "
        f"second deploy {results['median_cli_second_s']:.2f}s; aideploy/by hand "
        f"{results['median_overhead_ratio']:.3f} (library {results['median_library_s']:.1f}s, "
        f"replay {results['median_replay_s']:.1f}s); outside commands: library "
        f"{results['median_library_between_s']:.2f}s ({results['median_own_share']:.1%} of its "
        f"wall time), replay {results['median_replay_between_s']:.2f}s; "
        f"CLI start-up {results['cli_startup_s']:.2f}s"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
