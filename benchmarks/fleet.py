"""Fleet deploy wall time: aideploy vs a raw-paramiko floor (and pyinfra, fabric, ansible when
installed), N hosts at once.

Each host is its own OpenSSH server on loopback (tests/support/sshd.py) with its own directory.
Per host the work is: 20 separate ``true`` commands, a 100 KB upload, a hash check of the upload,
a marker file. Every tool runs as its own process and is timed whole (start-up included):

* ``aideploy``: ``aideploy deploy --inventory`` with ``--forks``, the plan
  ``benchmarks.fleet_plan:plan``, its state and knowledge base recorded as in any run;
* ``floor``: ``benchmarks/fleet_floor.py``, raw paramiko, one TCP_NODELAY connection per host,
  hosts in threads, nothing recorded;
* ``pyinfra``, ``fabric``, ``ansible``: ``benchmarks/fleet_peers.py`` (``pip install -e .[bench]``);
  skipped with a note when not installed.

The project's modules are byte-compiled first (as an installed copy is). Two variants: the remote shell's start-up files skipped, and a login ``.bashrc`` that costs
``--bashrc`` seconds (default 0.2) per shell. Median of ``--rounds`` (default 3) interleaved
rounds for N in ``--hosts`` (default 1,5,20). Every run is checked: each host has its marker.

Usage: python benchmarks/fleet.py [--hosts 1,5,20] [--rounds 3] [--bashrc 0.2] [--markdown]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.sshd import SSHServer, running_sshds  # noqa: E402

PEERS = {"pyinfra": "pyinfra", "fabric": "fabric", "ansible": "ansible"}
PAYLOAD_BYTES = 100 * 1024


class Bench:
    def __init__(self, work: Path, servers: list[SSHServer], forks: int) -> None:
        self.work = work
        self.servers = servers
        self.forks = forks
        self.payload = work / "payload.bin"
        self.payload.write_bytes(random.Random(7).randbytes(PAYLOAD_BYTES))
        self.digest = hashlib.sha256(self.payload.read_bytes()).hexdigest()
        self.known = work / "known_hosts"
        self.known.write_text("".join(s.known_hosts_lines() for s in servers))
        self.config = work / "config.json"
        self.config.write_text(json.dumps({"ssh": {"known_hosts": str(self.known), "timeout": 30}}))
        self.runs = 0
        #: CPU seconds (user + system) each tool's processes used, summed over its runs
        self.cpu: dict[str, float] = {}

    def hosts(self, n: int, key: str, tool: str) -> list[dict[str, object]]:
        self.runs += 1
        base = self.work / "roots" / f"{tool}-{self.runs}"
        found = []
        for index, server in enumerate(self.servers[:n], 1):
            root = base / f"host{index}"
            root.parent.mkdir(parents=True, exist_ok=True)
            found.append(
                {
                    "name": f"host{index}",
                    "address": server.host,
                    "port": server.port,
                    "user": server.user,
                    "key_file": str(server.keys[key]),
                    "known_hosts": str(self.known),
                    "root": str(root),
                }
            )
        return found

    def check(self, hosts: list[dict[str, object]], tool: str) -> None:
        missing = [h["name"] for h in hosts if not Path(str(h["root"]), "marker").exists()]
        if missing:
            raise RuntimeError(f"{tool}: no marker on {', '.join(map(str, missing))}")
        for host in hosts:
            shutil.rmtree(str(host["root"]), ignore_errors=True)

    def run(self, tool: str, n: int, key: str) -> float:
        hosts = self.hosts(n, key, tool)
        forks = min(self.forks, n)
        spec = self.work / f"{tool}-hosts.json"
        spec.write_text(json.dumps({"payload": str(self.payload), "hosts": hosts}))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        if tool == "aideploy":
            inventory = self.work / "fleet.toml"
            inventory.write_text(
                "".join(
                    f'[hosts.{h["name"]}]\nhost = "{h["address"]}"\nport = {h["port"]}\n'
                    f'user = "{h["user"]}"\nkey_file = "{h["key_file"]}"\n'
                    f'vars = {{ ROOT = "{h["root"]}", PAYLOAD = "{self.payload}", '
                    f'PAYLOAD_SHA256 = "{self.digest}" }}\n'
                    for h in hosts
                )
            )
            env.update(AIDEPLOY_HOME=str(self.work / "home"), AIDEPLOY_KB=str(self.work / "kb.db"))
            args = [
                sys.executable, "-m", "aideploy", "-q", "--plain", "--config", str(self.config),
                "deploy", "--inventory", str(inventory), "--plan", "benchmarks.fleet_plan:plan",
                "--forks", str(forks),
            ]  # fmt: skip
        elif tool == "floor":
            args = [sys.executable, str(ROOT / "benchmarks" / "fleet_floor.py"), str(spec)]
            args.append(str(forks))
        else:
            args = [sys.executable, str(ROOT / "benchmarks" / "fleet_peers.py"), tool, str(spec)]
            args += [str(forks), str(self.work / tool)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=self.work)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu[tool] = self.cpu.get(tool, 0.0) + (
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr[-1500:]}")
        self.check(hosts, tool)
        return elapsed


def set_bashrc(servers: list[SSHServer], seconds: float) -> None:
    for server in servers:
        rc = server.directory / "rc-home" / ".bashrc"
        rc.write_text(f"sleep {seconds}\n" if seconds else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,5,20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=20)
    parser.add_argument("--bashrc", type=float, default=0.2)
    parser.add_argument("--markdown", action="store_true", help="Print the table as Markdown.")
    parser.add_argument("--tools", default="aideploy,floor,pyinfra,fabric,ansible")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    tools = []
    for tool in args.tools.split(","):
        module = PEERS.get(tool)
        if module and importlib.util.find_spec(module) is None:
            print(f"note: {tool} is not installed (pip install -e '.[bench]'); skipped")
            continue
        tools.append(tool)
    # the project's bytecode, as an installed aideploy has it: without it (a fresh checkout, or
    # PYTHONDONTWRITEBYTECODE set) every aideploy run would compile its own modules again
    sources = [str(ROOT / d) for d in ("aideploy", "engine", "knowledge", "steps", "benchmarks")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *sources], check=False)
    work = Path(tempfile.mkdtemp(prefix="aideploy-fleet-bench."))
    results: list[tuple[str, int, str, float, float, float, float]] = []
    try:
        started = time.monotonic()
        with running_sshds(max(counts)) as servers:
            print(f"{len(servers)} sshd started in {time.monotonic() - started:.1f}s", flush=True)
            bench = Bench(work, servers, args.forks)
            variants = [("no .bashrc", "ed25519", 0.0)]
            if args.bashrc:
                variants.append((f"{args.bashrc:g} s .bashrc", "bashrc", args.bashrc))
            for label, key, cost in variants:
                set_bashrc(servers, cost)
                for n in counts:
                    times: dict[str, list[float]] = {tool: [] for tool in tools}
                    bench.cpu = {}
                    for _ in range(args.rounds):
                        for tool in tools:
                            try:
                                times[tool].append(bench.run(tool, n, key))
                            except RuntimeError as exc:
                                print(f"  {exc}", file=sys.stderr)
                    floor = statistics.median(times["floor"]) if times.get("floor") else 0.0
                    for tool in tools:
                        if not times[tool]:
                            continue
                        median = statistics.median(times[tool])
                        ratio = median / floor if floor else 0.0
                        cpu = bench.cpu.get(tool, 0.0) / len(times[tool])
                        row = (label, n, tool, median, min(times[tool]), ratio, cpu)
                        results.append(row)
                        print(
                            f"{label:>14} N={n:<3} {tool:<9} {median:7.2f} s "
                            f"(min {min(times[tool]):.2f})  {ratio:5.2f}x floor  "
                            f"cpu {cpu:.2f} s",
                            flush=True,
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.markdown:
        print("\n| shell start-up | N | tool | median wall (s) | best (s) | vs floor | CPU (s) |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for label, n, tool, median, best, ratio, cpu in results:
            print(
                f"| {label} | {n} | {tool} | {median:.2f} | {best:.2f} | {ratio:.2f} | {cpu:.2f} |"
            )


if __name__ == "__main__":
    main()
