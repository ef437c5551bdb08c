"""A throwaway host: this machine's root filesystem, copy-on-write, in its own mount + PID namespace.

``/`` is the lower dir of an overlayfs whose upper and work dirs live on a tmpfs; everything written
inside (``/etc/nginx``, ``/opt``, ``/var/lib/postgresql``, users in ``/etc/passwd``) lands in that
tmpfs and vanishes with the host. The overlay is mounted from inside a new mount namespace
(``unshare --mount --pid --fork``), so it never appears in the real machine's mount table. ``/proc``
is mounted fresh (it shows only the namespace's processes); ``/sys`` and ``/dev`` are bind-mounted,
``/run``, ``/tmp`` and ``/dev/shm`` are fresh tmpfs, as on a freshly booted machine.

PID 1 inside is a tiny init (Python) that starts ``sshd`` on a free loopback port (network is
shared with the machine so package registries stay reachable) with a generated host key and a
generated client key authorized for root. Everything started inside (nginx, PostgreSQL, gunicorn,
daemons detached with ``setsid``) is killed by the kernel when that init dies; the mount namespace
and the tmpfs go with the last process.

Use it from a script::

    with throwaway_host() as host:
        host.run("echo hi > /etc/motd")           # inside; the real /etc/motd is untouched
        print(host.port, host.key_file)            # ssh -p PORT -i KEY root@127.0.0.1

``aideploy demo`` deploys the sample app into one; the tests use it through the ``throwaway``
fixture in ``tests/support/throwaway.py``. :class:`AppRepo` publishes an app's source as a git
repository inside the host, for a plan to fetch. Needs root (CAP_SYS_ADMIN), util-linux
``unshare``/``nsenter``, overlayfs and OpenSSH.

Over 400 lines because starting, entering and tearing down the host are one life cycle that
shares its mounts, namespaces and processes; the pieces are not useful apart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aideploy.engine.connectors.ssh import SSHConnector

SSHD = "/usr/sbin/sshd"
INSIDE_DIR = "/etc/aideploy-throwaway"

_INIT = textwrap.dedent(
    """\
    import os, signal, subprocess, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", "%(dir)s/sshd_config"],
                            stdout=open("%(dir)s/sshd.log", "ab"), stderr=subprocess.STDOUT)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            sys.exit(1)
        except InterruptedError:
            continue
        if pid == sshd.pid:
            sys.exit(1)
    """
)

_SETUP = textwrap.dedent(
    """\
    set -e
    D="$1"; R="$D/root"
    mount -t tmpfs -o size="$2",mode=0755 tmpfs "$D/rw"
    mkdir "$D/rw/upper" "$D/rw/work"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$D/rw/upper,workdir=$D/rw/work" "$R"
    mount -t proc proc "$R/proc"
    mount --rbind /sys "$R/sys"
    mount --rbind /dev "$R/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
    mount -t tmpfs -o mode=0755 tmpfs "$R/run"
    mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
    mkdir -p "$R/run/sshd" "$R/run/lock" "$R%(dir)s" "$R/root/.ssh"
    chmod 0700 "$R/root/.ssh"
    cp "$D/ssh/"* "$R%(dir)s/"
    cp "$D/ssh/authorized_keys" "$R/root/.ssh/authorized_keys"
    chmod 0600 "$R%(dir)s/ssh_host_ed25519_key" "$R/root/.ssh/authorized_keys"
    exec chroot "$R" /usr/bin/python3 %(dir)s/init.py
    """
)


def loopback_sshd_config(
    port: int,
    host_keys: Sequence[str],
    pid_file: str,
    *,
    extra: Sequence[str] = (),
    sftp: bool = True,
) -> str:
    """An sshd_config for a server on 127.0.0.1 that takes keys only (root too, no PAM),
    with many sessions at once and SFTP (unless ``sftp`` is false); ``extra`` lines come last
    (``Match`` blocks)."""
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            *(f"HostKey {key}" for key in host_keys),
            f"PidFile {pid_file}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UseDNS no",
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            *(["Subsystem sftp internal-sftp"] if sftp else []),
            "LogLevel ERROR",
            *extra,
            "",
        ]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> str | None:
    """Why a throwaway host cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("unshare", "nsenter", "ssh-keygen", "chroot"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not os.path.exists(SSHD):
        return "OpenSSH server not installed"
    if not os.path.exists("/usr/bin/python3"):
        return "/usr/bin/python3 missing"
    if not _overlayfs():
        return "the kernel has no overlay filesystem"
    return None


def _overlayfs() -> bool:
    def listed() -> bool:
        try:
            return "\toverlay\n" in Path("/proc/filesystems").read_text()
        except OSError:
            return False

    if listed():
        return True
    if shutil.which("modprobe"):  # a module not loaded yet loads on first use
        subprocess.run(["modprobe", "-q", "overlay"], capture_output=True, check=False)
    return listed()


@dataclass
class ThrowawayHost:
    directory: Path
    port: int
    key_file: Path
    known_hosts: Path
    host: str = "127.0.0.1"
    user: str = "root"
    pid: int = 0  # PID 1 of the namespace, as the real machine sees it
    _unshare: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def host_key_line(self) -> str:
        """The known_hosts line of the host's generated key (``[127.0.0.1]:PORT ssh-ed25519 ...``)."""
        return self.known_hosts.read_text().strip()

    def ssh_options(self) -> list[str]:
        """``aideploy`` target options that reach this host: server, port, user, key file."""
        return [
            "--server",
            self.host,
            "--port",
            str(self.port),
            "--user",
            self.user,
            "--key-file",
            str(self.key_file),
        ]

    def connector(self) -> SSHConnector:
        """An SSHConnector logging in as root with the host's key (no agent, no ~/.ssh)."""
        return SSHConnector(
            self.host,
            port=self.port,
            username=self.user,
            key_filename=self.key_file,
            known_hosts=self.known_hosts,
            ssh_config=None,
            use_agent=False,
            look_for_keys=False,
            connect_retries=0,
            connect_timeout=5.0,
        )

    @property
    def root(self) -> Path:
        """The host's root directory, reachable from the real machine (while it runs)."""
        return Path(f"/proc/{self.pid}/root")

    def path(self, inside: str) -> Path:
        """A path inside the host, as seen from the real machine.

        Absolute symlinks met on the way (``/var/lock -> /run/lock``) resolve against the REAL
        root, not the host's: use :meth:`read`/:meth:`exists` (which run inside) for those.
        """
        return self.root / inside.lstrip("/")

    def run(
        self, command: str, *, check: bool = False, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside (as root, in its namespaces and root directory).

        Output goes through temp files, not pipes: a daemon started by ``command`` that keeps
        its inherited stdout/stderr open cannot make this wait.
        """
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            completed = subprocess.run(
                ["nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "/bin/sh", "-c", command],
                stdout=out,
                stderr=err,
                timeout=timeout,
                env={
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME": "/root",
                    "LANG": "C.UTF-8",
                },
                stdin=subprocess.DEVNULL,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(
                completed.args,
                completed.returncode,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"inside throwaway host: {command!r} exited {result.returncode}: "
                f"{result.stderr[-2000:]}"
            )
        return result

    def read(self, inside: str) -> str | None:
        """The content of a file inside the host (None if it does not exist)."""
        result = self.run(f"cat -- '{inside}'")
        return result.stdout if result.returncode == 0 else None

    def exists(self, inside: str) -> bool:
        return self.run(f"test -e '{inside}'").returncode == 0

    def pid_namespace(self) -> str:
        return os.readlink(f"/proc/{self.pid}/ns/pid")

    def sshd_log(self) -> str:
        try:
            return self.path(f"{INSIDE_DIR}/sshd.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill the namespace's init (the kernel kills everything else inside) and clean up."""
        process, self._unshare = self._unshare, None
        if process is not None:
            if self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
        shutil.rmtree(self.directory, ignore_errors=True)


def processes_in_namespace(namespace: str) -> list[int]:
    """PIDs (as the real machine sees them) of processes in the PID namespace ``namespace``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                found.append(int(entry))
    return found


def _keygen(path: Path) -> str:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            str(path),
            "-C",
            "aideploy-throwaway",
        ],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def _child_of(pid: int, limit: float = 10.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.02)
    raise RuntimeError("the throwaway host's init did not start")


def _wait_for_sshd(port: int, host: ThrowawayHost, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.settimeout(2.0)
            if s.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    log = host.sshd_log()
    err = b""
    if process.poll() is not None and process.stderr is not None:
        err = process.stderr.read()
    raise RuntimeError(f"sshd in the throwaway host did not start: {err.decode()[-1000:]} {log}")


#: the only account allowed to log in with a password (only tests create it inside the host)
PASSWORD_USER = "aidpw"  # noqa: S105 - a user name, not a password


@contextlib.contextmanager
def throwaway_host(tmpfs_size: str = "8g") -> Iterator[ThrowawayHost]:
    """Start a throwaway host for the duration of the block; everything in it goes afterwards."""
    why = available()
    if why:
        raise RuntimeError(f"throwaway host unavailable: {why}")
    directory = Path(tempfile.mkdtemp(prefix="aideploy-throwaway."))
    host: ThrowawayHost | None = None
    try:
        for name in ("root", "rw", "ssh"):
            (directory / name).mkdir()
        ssh = directory / "ssh"
        client_key = directory / "client_key"
        public = _keygen(client_key)
        (ssh / "authorized_keys").write_text(public + "\n")
        host_public = _keygen(ssh / "ssh_host_ed25519_key")
        port = free_port()
        (ssh / "sshd_config").write_text(
            loopback_sshd_config(
                port,
                [f"{INSIDE_DIR}/ssh_host_ed25519_key"],
                "/run/aideploy-throwaway-sshd.pid",
                # a user for tests of password logins (created by those tests only)
                extra=[f"Match User {PASSWORD_USER}", "    PasswordAuthentication yes"],
            )
        )
        (ssh / "init.py").write_text(_INIT % {"dir": INSIDE_DIR})
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_public.split()[:2])}\n")
        setup = directory / "setup.sh"
        setup.write_text(_SETUP % {"dir": INSIDE_DIR})
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "/bin/sh",
                str(setup),
                str(directory),
                tmpfs_size,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        host = ThrowawayHost(
            directory=directory,
            port=port,
            key_file=client_key,
            known_hosts=known_hosts,
            _unshare=process,
        )
        host.pid = _child_of(process.pid)
        _wait_for_sshd(port, host, process)
        yield host
    finally:
        if host is not None:
            host.close()
        else:
            shutil.rmtree(directory, ignore_errors=True)


# -- an app's source as a git repository inside the host -------------------------------------

GIT_IDENTITY = ("-c", "user.name=aideploy", "-c", "user.email=aideploy@localhost.invalid")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class AppRepo:
    """An app's source committed to git on this machine (``work/<name>``, a bare clone in
    ``work/bare.git``) and published into a throwaway host at ``inside`` (a bare repo a plan
    fetches with ``APP_REPO=<inside>``)."""

    host: ThrowawayHost
    work: Path
    name: str
    inside: str

    @property
    def tree(self) -> Path:
        return self.work / self.name

    @classmethod
    def create(
        cls, host: ThrowawayHost, source: Path, work: Path, inside: str, branch: str = "main"
    ) -> AppRepo:
        """Commit a copy of ``source`` (without build output) on ``branch`` and publish it."""
        repo = cls(host, work, source.name, inside)
        shutil.rmtree(repo.tree, ignore_errors=True)
        shutil.rmtree(work / "bare.git", ignore_errors=True)
        shutil.copytree(
            source,
            repo.tree,
            ignore=shutil.ignore_patterns("node_modules", "dist", "__pycache__", "*.pyc"),
        )
        git("init", "-q", "-b", branch, cwd=repo.tree)
        git("add", "-A", cwd=repo.tree)
        git("commit", "-q", "-m", f"{source.name}", cwd=repo.tree)
        git("clone", "-q", "--bare", str(repo.tree), str(work / "bare.git"), cwd=work)
        repo.publish()
        return repo

    def publish(self) -> None:
        """Copy the bare repository (objects and refs) into the host."""
        target = self.host.path(self.inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.work / "bare.git", target, dirs_exist_ok=True)

    def commit(self, message: str, files: Mapping[str, str]) -> str:
        """Commit ``files`` (path in the app -> content) on the current branch, publish it and
        return the new commit id."""
        for name, content in files.items():
            (self.tree / name).write_text(content)
        git("add", "-A", cwd=self.tree)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.tree)
        git("push", "-q", str(self.work / "bare.git"), "HEAD", cwd=self.tree)
        self.publish()
        return git("rev-parse", "HEAD", cwd=self.tree)


def http_get(
    url: str,
    *,
    host_header: str | None = None,
    certificate: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """GET an ``http://`` or ``https://`` URL: status and body. ``host_header`` picks the nginx
    site when ``url`` names an address. HTTPS trusts exactly ``certificate`` (PEM text: the
    host's self-signed one), without a host name check since the URL names an address; so does
    the HTTPS URL an ``http://`` one is redirected to (nginx's redirect when TLS is on)."""
    import ssl

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    context = None
    if certificate is not None:
        context = ssl.create_default_context(cadata=certificate)
        context.check_hostname = False
    elif url.startswith("https://"):
        raise ValueError("https needs the certificate to trust")
    headers = {"Host": host_header} if host_header else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
        return int(response.status), bytes(response.read())
