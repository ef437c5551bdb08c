"""Milliseconds per command over SSH: aideploy vs raw paramiko, channel-per-command vs session.

Starts its own loopback sshd (tests/support/sshd.py) and runs ``true`` N times (default 200) per
configuration:

run 1 - the login shell's start-up files are skipped (the test key sets HOME to an empty dir):
  1. aideploy Runner over SSHConnector (a channel per command)
  2. raw paramiko exec_command, one connection, TCP_NODELAY socket (the floor)
  3. raw paramiko exec_command, one connection, paramiko's default socket
  4. aideploy Runner over SessionConnector (one shell)

run 2 - logged in with a key that keeps the user's real HOME, so ~/.bashrc runs:
  5. aideploy Runner over SSHConnector (a channel per command: .bashrc per command)
  6. aideploy Runner over SessionConnector (.bashrc once)

Usage: python benchmarks/ssh_commands.py [-n 200]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aideploy.engine.connectors.base import Connector
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.runner import Runner
from tests.support.sshd import SSHServer, running_sshd

WARMUP = 10
ROUNDS = 10

Once = Callable[[], None]


def aideploy_once(connector: Connector) -> tuple[Once, Callable[[], None]]:
    connector.connect()
    runner = Runner(connector, timeout=60)

    def once() -> None:
        result = runner.run("true")
        assert result.exit_code == 0, result

    return once, connector.close


def paramiko_once(server: SSHServer, *, nodelay: bool) -> tuple[Once, Callable[[], None]]:
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))  # RejectPolicy for anything else
    options: dict[str, object] = {}
    if nodelay:
        sock = socket.create_connection((server.host, server.port), 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        options["sock"] = sock
    client.connect(
        server.host,
        port=server.port,
        username=server.user,
        key_filename=str(server.client_key),
        look_for_keys=False,
        allow_agent=False,
        **options,  # type: ignore[arg-type]
    )

    def once() -> None:
        _, stdout, stderr = client.exec_command("true")
        stdout.read()
        stderr.read()
        assert stdout.channel.recv_exit_status() == 0

    return once, client.close


def measure(configs: list[tuple[str, Once]], count: int) -> dict[str, float]:
    """ms/command per configuration: rounds interleave the configurations (so drifting machine
    load hits all of them alike); the figure is the median of the per-round means."""
    per_round = max(1, count // ROUNDS)
    samples: dict[str, list[float]] = {name: [] for name, _ in configs}
    for _, once in configs:
        for _ in range(WARMUP):
            once()
    for _ in range(ROUNDS):
        for name, once in configs:
            started = time.perf_counter()
            for _ in range(per_round):
                once()
            samples[name].append((time.perf_counter() - started) / per_round * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=200)
    count = parser.parse_args().count
    rows: list[tuple[str, str, float]] = []
    with running_sshd() as server:
        first = {
            "aideploy Runner / SSHConnector": aideploy_once(server.connector()),
            "raw paramiko, TCP_NODELAY (floor)": paramiko_once(server, nodelay=True),
            "raw paramiko, default socket": paramiko_once(server, nodelay=False),
            "aideploy Runner / SessionConnector": aideploy_once(
                SessionConnector(server.connector())
            ),
        }
        results = measure([(name, once) for name, (once, _) in first.items()], count)
        rows += [("1: no shell start-up", name, ms) for name, ms in results.items()]
        for _, close in first.values():
            close()
        second = {
            "aideploy Runner / SSHConnector": aideploy_once(
                server.connector(key_filename=server.login_key)
            ),
            "aideploy Runner / SessionConnector": aideploy_once(
                SessionConnector(server.connector(key_filename=server.login_key))
            ),
        }
        results = measure([(name, once) for name, (once, _) in second.items()], count)
        rows += [("2: real ~/.bashrc", name, ms) for name, ms in results.items()]
        for _, close in second.values():
            close()

    print(
        f"{count} x `true` per configuration over loopback SSH, ms per command "
        f"(median of {ROUNDS} interleaved rounds, after {WARMUP} warm-up runs)\n"
    )
    print(f"{'run':<22} {'configuration':<36} {'ms/cmd':>8}")
    for run, name, ms in rows:
        print(f"{run:<22} {name:<36} {ms:>8.2f}")
    channel, floor, default, session, channel_rc, session_rc = (ms for _, _, ms in rows)
    print()
    print(f"aideploy channel / TCP_NODELAY floor:        {channel / floor:6.2f}x")
    print(f"paramiko default socket / TCP_NODELAY floor: {default / floor:6.2f}x")
    print(f"channel / session, no start-up:              {channel / session:6.2f}x")
    print(f"channel / session, real ~/.bashrc:           {channel_rc / session_rc:6.2f}x")


if __name__ == "__main__":
    main()
