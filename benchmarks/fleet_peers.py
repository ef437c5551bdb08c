"""The peers of ``benchmarks/fleet.py``: the same work per host with pyinfra, fabric or ansible.

``python benchmarks/fleet_peers.py TOOL HOSTS.json FORKS WORKDIR``; each tool's usual way:
pyinfra's CLI with ``--parallel``, fabric Connections in threads, ``ansible-playbook -f``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

COMMANDS = 20


def fabric_run(hosts: list[dict[str, Any]], payload: Path, digest: str, forks: int) -> None:
    from fabric import Connection

    def one(host: dict[str, Any]) -> None:
        conn = Connection(
            host["address"],
            port=host["port"],
            user=host["user"],
            connect_kwargs={
                "key_filename": host["key_file"],
                "allow_agent": False,
                "look_for_keys": False,
            },
        )
        with conn:
            root = host["root"]
            conn.run(f"mkdir -p {root}", hide=True)
            for _ in range(COMMANDS):
                conn.run("true", hide=True)
            conn.put(str(payload), f"{root}/payload.bin")
            conn.run(
                f'test "$(sha256sum {root}/payload.bin | cut -d" " -f1)" = {digest}', hide=True
            )
            conn.run(f"touch {root}/marker", hide=True)

    with ThreadPoolExecutor(max_workers=forks) as pool:
        for future in [pool.submit(one, h) for h in hosts]:
            future.result()


PYINFRA_DEPLOY = """
from pyinfra import host
from pyinfra.operations import files, server

root = host.data.root
server.shell(name="mkdir", commands=[f"mkdir -p {root}"])
for i in range(20):
    server.shell(name=f"true {i}", commands=["true"])
files.put(name="upload", src=host.data.payload, dest=f"{root}/payload.bin")
server.shell(
    name="hash",
    commands=[f'test "$(sha256sum {root}/payload.bin | cut -d" " -f1)" = {host.data.digest}'],
)
server.shell(name="marker", commands=[f"touch {root}/marker"])
"""


def pyinfra_run(
    hosts: list[dict[str, Any]], payload: Path, digest: str, forks: int, work: Path
) -> None:
    inventory = work / "inventory.py"
    entries = [
        (
            h["name"],
            {
                "ssh_hostname": h["address"],
                "ssh_port": h["port"],
                "ssh_user": h["user"],
                "ssh_key": h["key_file"],
                "ssh_known_hosts_file": h["known_hosts"],
                "root": h["root"],
                "payload": str(payload),
                "digest": digest,
            },
        )
        for h in hosts
    ]
    inventory.write_text(f"hosts = {entries!r}\n")
    deploy = work / "deploy.py"
    deploy.write_text(PYINFRA_DEPLOY)
    binary = Path(sys.executable).with_name("pyinfra")
    subprocess.run(
        [str(binary), str(inventory), str(deploy), "-y", "--parallel", str(forks)],
        check=True,
        cwd=work,
        capture_output=True,
    )


def ansible_run(
    hosts: list[dict[str, Any]], payload: Path, digest: str, forks: int, work: Path
) -> None:
    inventory = work / "hosts.ini"
    inventory.write_text(
        "[fleet]\n"
        + "".join(
            f"{h['name']} ansible_host={h['address']} ansible_port={h['port']} "
            f"ansible_user={h['user']} ansible_ssh_private_key_file={h['key_file']} "
            f"root={h['root']}\n"
            for h in hosts
        )
    )
    playbook = work / "play.yml"
    playbook.write_text(
        f"""- hosts: fleet
  gather_facts: false
  tasks:
    - command: mkdir -p {{{{ root }}}}
    - command: "true"
      loop: "{{{{ range({COMMANDS}) | list }}}}"
    - copy: src={payload} dest={{{{ root }}}}/payload.bin
    - shell: test "$(sha256sum {{{{ root }}}}/payload.bin | cut -d' ' -f1)" = {digest}
    - file: path={{{{ root }}}}/marker state=touch
"""
    )
    binary = Path(sys.executable).with_name("ansible-playbook")
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": f"-o UserKnownHostsFile={hosts[0]['known_hosts']} "
        "-o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
    }
    subprocess.run(
        [str(binary), "-i", str(inventory), "-f", str(forks), str(playbook)],
        check=True,
        cwd=work,
        env=env,
        capture_output=True,
    )


def main() -> None:
    tool, spec_file, forks_text, work_text = sys.argv[1:5]
    spec = json.loads(Path(spec_file).read_text())
    payload = Path(spec["payload"])
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    forks = int(forks_text)
    work = Path(work_text)
    work.mkdir(parents=True, exist_ok=True)
    try:
        if tool == "fabric":
            fabric_run(spec["hosts"], payload, digest, forks)
        elif tool == "pyinfra":
            pyinfra_run(spec["hosts"], payload, digest, forks, work)
        elif tool == "ansible":
            ansible_run(spec["hosts"], payload, digest, forks, work)
        else:
            raise SystemExit(f"unknown tool {tool}")
    except subprocess.CalledProcessError as exc:
        out = (exc.stdout or b"").decode(errors="replace")[-1500:]
        err = (exc.stderr or b"").decode(errors="replace")[-1500:]
        print(f"{tool} failed: {out}\n{err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
