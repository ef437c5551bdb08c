"""The throwaway host: writes stay inside, processes die with it, sshd lets root in."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.throwaway import (
    available,
    free_port,
    processes_in_namespace,
    throwaway_host,
)

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def test_writes_stay_inside_and_processes_die_with_it() -> None:
    marker = f"/etc/aideploy-throwaway-test-{uuid.uuid4().hex}"
    with throwaway_host() as host:
        host.run(f"echo inside > {marker}", check=True)
        assert host.run(f"cat {marker}").stdout == "inside\n"
        assert host.path(marker).read_text() == "inside\n"
        assert not os.path.exists(marker)
        # a daemon detached from everything still belongs to the namespace
        host.run("setsid sleep 600 >/dev/null 2>&1 < /dev/null &", check=True)
        deadline = time.monotonic() + 10
        while "sleep" not in host.run("ps -eo comm").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "sleep" in host.run("ps -eo comm").stdout
        assert host.run("echo $$").stdout.strip() != ""
        namespace = host.pid_namespace()
        assert len(processes_in_namespace(namespace)) >= 3  # init, sshd, sleep
        directory = host.directory
    deadline = time.monotonic() + 10
    while processes_in_namespace(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_namespace(namespace) == []
    assert not os.path.exists(marker)
    assert not directory.exists()
    assert str(directory) not in Path("/proc/self/mountinfo").read_text()


def test_root_logs_in_over_ssh_and_sees_the_overlay() -> None:
    with throwaway_host() as host:
        host.run("mkdir -p /opt/probe && echo over-ssh > /opt/probe/file", check=True)
        with host.connector() as connector:
            code, output = connector.run_quiet("id -u; cat /opt/probe/file; echo $$")
        assert code == 0
        lines = output.decode().split()
        assert "0" in lines and "over-ssh" in lines
        assert not os.path.exists("/opt/probe/file")


def test_services_started_inside_die_with_the_host() -> None:
    pg_port, http_port = free_port(), free_port()
    with throwaway_host() as host:
        host.run(
            "ver=$(pg_lsclusters -h | awk 'NR==1 {print $1}'); "
            '[ -n "$ver" ] || { ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1); '
            'pg_createcluster "$ver" main >/dev/null; }; '
            f'pg_conftool "$ver" main set port {pg_port} && '
            "install -d -o postgres -g postgres -m 2775 /run/postgresql && "
            'pg_ctlcluster "$ver" main start',
            check=True,
        )
        host.run(
            "mkdir -p /tmp/ng && printf 'events {}\\nhttp { server { listen %s; } }\\n' "
            f"{http_port} > /tmp/ng/nginx.conf && nginx -c /tmp/ng/nginx.conf",
            check=True,
        )
        names = host.run("ps -eo comm").stdout.split()
        assert "nginx" in names and "postgres" in names
        with socket.create_connection(("127.0.0.1", http_port), 2):
            pass
        namespace = host.pid_namespace()
    deadline = time.monotonic() + 10
    while processes_in_namespace(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in_namespace(namespace) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", http_port), 1):
        pass
    real = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    assert str(pg_port) not in real  # the real cluster's configuration is untouched
