"""The floor for ``benchmarks/fleet.py``: the same work per host with raw paramiko, one
connection per host (TCP_NODELAY), hosts in threads, nothing recorded. Run as its own process
(``python benchmarks/fleet_floor.py HOSTS.json FORKS``) so its wall time is a whole process too."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko

COMMANDS = 20


def one_host(host: dict[str, Any], payload: Path, digest: str) -> None:
    client = paramiko.SSHClient()
    client.load_host_keys(host["known_hosts"])
    sock = socket.create_connection((host["address"], host["port"]), 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(
        host["address"],
        port=host["port"],
        username=host["user"],
        key_filename=host["key_file"],
        sock=sock,
        allow_agent=False,
        look_for_keys=False,
    )

    def run(command: str) -> None:
        _, out, _ = client.exec_command(command)
        if out.channel.recv_exit_status() != 0:
            raise RuntimeError(f"{command}: failed")

    try:
        root = host["root"]
        run(f"mkdir -p {root}")
        for _ in range(COMMANDS):
            run("true")
        sftp = client.open_sftp()
        sftp.put(str(payload), f"{root}/payload.bin")
        sftp.close()
        run(f'test "$(sha256sum {root}/payload.bin | cut -d" " -f1)" = {digest}')
        run(f"touch {root}/marker")
    finally:
        client.close()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    forks = int(sys.argv[2])
    payload = Path(spec["payload"])
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    with ThreadPoolExecutor(max_workers=forks) as pool:
        for future in [pool.submit(one_host, h, payload, digest) for h in spec["hosts"]]:
            future.result()


if __name__ == "__main__":
    main()
