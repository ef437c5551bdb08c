"""``aideploy demo``: the sample app, deployed with the ``stack`` plan into a throwaway host.

The throwaway host (:mod:`aideploy.engine.throwaway`) is a copy-on-write copy of this machine in
its own mount and PID namespaces, with its own sshd on a loopback port. The demo publishes the
sample app there as a git repository, trusts exactly the host key it generated, runs the real
``aideploy deploy --plan stack`` over SSH, fetches the page and the API through nginx, and prints
``aideploy learn report`` for the demo's own knowledge base. Everything it keeps lives in one
directory (:func:`demo_dir`); everything deployed goes with the host.

The demo also shows the learning: before the deploy, a stray web server in the host holds the
port nginx is to serve on (a real process, a real ``Address already in use``). The deploy
classifies the failure, frees the port with the matching strategy and goes on. Then nginx is
stopped, the stray server takes the port again and the app is deployed a second time: the
strategy that worked is now tried first on the knowledge base's evidence, and the report shows
what fixed what and the first-try rate.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import platformdirs

from aideploy.core.atomic import write_atomic
from aideploy.core.errors import AideployError, UsageError
from aideploy.core.private import private_dir
from aideploy.engine.throwaway import (
    AppRepo,
    ThrowawayHost,
    available,
    free_port,
    http_get,
    throwaway_host,
)

#: where the sample app's source sits in a checkout of aideploy
SAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "sampleapp"
REPO_INSIDE = "/srv/git/sampleapp.git"
APP_NAME = "sampleapp"
DOMAIN = "localhost"
FALLBACK = "aideploy deploy --local --plan example"


class DemoUnavailable(AideployError):
    """The throwaway host cannot run on this machine."""


def demo_dir() -> Path:
    """The demo's own directory: ``demo`` in the user data directory
    (``~/.local/share/aideploy/demo`` on Linux)."""
    return Path(platformdirs.user_data_dir("aideploy")) / "demo"


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "ai_deployment_config.json"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def home(self) -> Path:
        """``$AIDEPLOY_HOME`` of the demo's commands: deployment states, logs, audit log."""
        return self.root / "home"

    @property
    def kb(self) -> Path:
        return self.root / "knowledge.db"

    @property
    def repo(self) -> Path:
        return self.root / "repo"


@dataclass(frozen=True)
class Ports:
    http: int
    https: int
    db: int

    @classmethod
    def free(cls) -> Ports:
        # the host shares this machine's network: its nginx and PostgreSQL need ports nobody holds
        chosen: list[int] = []
        while len(chosen) < 3:
            port = free_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)


def stack_settings(repo: str, ports: Ports, domain: str = DOMAIN) -> dict[str, str]:
    """The stack plan's variables for a deploy into a throwaway host."""
    return {
        "APP_REPO": repo,
        "APP_REF": "main",
        "HTTP_PORT": str(ports.http),
        "HTTPS_PORT": str(ports.https),
        "DB_PORT": str(ports.db),
        "DOMAIN": domain,
    }


def write_config(paths: DemoPaths, host: ThrowawayHost) -> None:
    """The demo's configuration, and a known_hosts holding exactly this host's generated key
    (a new host, port and key every run, so the file is rewritten, never appended to)."""
    private_dir(paths.root)
    write_atomic(paths.known_hosts, (host.host_key_line() + "\n").encode())
    config = {
        "version": "1.0",
        "ssh": {"known_hosts": str(paths.known_hosts), "connect_retries": 2},
        # everything in the throwaway host goes with it: high-risk recoveries (stopping the
        # stray server on nginx's port) may run there without a question
        "deployment": {"command_timeout": 1200, "auto_approve": True},
    }
    write_atomic(paths.config, (json.dumps(config, indent=2) + "\n").encode())


def aideploy_command(paths: DemoPaths, *args: str) -> list[str]:
    return [sys.executable, "-m", "aideploy", "--config", str(paths.config), *args]


def set_options(settings: dict[str, str]) -> list[str]:
    """``--set KEY=VALUE`` for each plan variable."""
    return [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]


def deploy_command(paths: DemoPaths, host: ThrowawayHost, settings: dict[str, str]) -> list[str]:
    return aideploy_command(
        paths,
        "deploy",
        *host.ssh_options(),
        "--plan",
        "stack",
        "--kb",
        str(paths.kb),
        *set_options(settings),
    )


def _shown(command: Sequence[str]) -> str:
    """A command as the user would type it (``aideploy`` for ``python -m aideploy``)."""
    return "aideploy " + shlex.join(list(command[3:]))


def _run(paths: DemoPaths, command: Sequence[str]) -> int:
    env = {**os.environ, "AIDEPLOY_HOME": str(paths.home)}
    return subprocess.run(list(command), env=env, check=False).returncode


def probe(host: ThrowawayHost, ports: Ports, domain: str = DOMAIN) -> list[tuple[str, str]]:
    """Fetch the page and the API health endpoint through the host's nginx (HTTP and HTTPS,
    trusting the host's own certificate): ``(url, what answered)`` for each."""
    certificate = host.read(f"/etc/aideploy/{APP_NAME}/tls/fullchain.pem")
    urls = [f"http://{domain}:{ports.http}/", f"http://{domain}:{ports.http}/api/health/"]
    if certificate:
        urls += [f"https://{domain}:{ports.https}/", f"https://{domain}:{ports.https}/api/health/"]
    found = []
    for url in urls:
        try:
            status, body = http_get(url, certificate=certificate)
        except OSError as exc:
            found.append((url, f"no answer: {exc}"))
            continue
        found.append((url, f"{status} {_describe(body)}"))
    return found


#: the demo's deploys, each after the fault: what the user is told before it
DEPLOYS = (
    "Fault injected: a stray web server (python3 -m http.server) holds port {port}, where nginx "
    "is to serve. The deploy meets it, classifies it and recovers:",
    "nginx stopped and the stray server took port {port} again. Deploying again: the fix that "
    "worked is now tried first, on the knowledge base's evidence:",
)

#: how long the stray server may take to start listening, or nginx to let go of the port
PORT_WAIT_SECONDS = 30.0


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _wait_port(port: int, *, held: bool) -> None:
    """Until something listens on ``port`` (or nothing, with ``held=False``)."""
    deadline = time.monotonic() + PORT_WAIT_SECONDS
    while _listening(port) is not held:
        if time.monotonic() > deadline:
            state = "listening" if held else "free"
            raise RuntimeError(f"port {port} was not {state} after {PORT_WAIT_SECONDS:g} s")
        time.sleep(0.1)


def occupy_port(host: ThrowawayHost, port: int) -> None:
    """The fault: a stray web server inside the host listening on ``port`` (stopping nginx first,
    which may hold it from an earlier deploy)."""
    if host.run("pgrep -x nginx >/dev/null").returncode == 0:
        host.run("nginx -s stop", check=True)
        _wait_port(port, held=False)
    host.run(
        # under a shell that waits for it, so that once killed it is reaped, not left a zombie
        f"setsid sh -c 'python3 -m http.server {port} --bind 127.0.0.1; true' "
        ">/dev/null 2>&1 </dev/null &",
        check=True,
    )
    _wait_port(port, held=True)


def _describe(body: bytes) -> str:
    text = body.decode(errors="replace")
    if text.lstrip().startswith("{"):
        return text.strip()[:200]
    if "<title>" in text:
        return "page: " + text.split("<title>", 1)[1].split("</title>", 1)[0].strip()
    return f"{len(body)} bytes"


def _say(message: str = "", *, bold: bool = False, fg: str | None = None) -> None:
    click.secho(message, bold=bold, fg=fg)


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="The demo's directory: configuration, known_hosts, state and logs, knowledge base "
    "(default: demo in the user data directory, ~/.local/share/aideploy/demo).",
)
@click.option(
    "--app",
    "app",
    type=click.Path(exists=True, file_okay=False),
    help="App to deploy instead of examples/sampleapp (same layout: backend/ and frontend/).",
)
def demo(directory: str | None, app: str | None) -> None:
    """Deploy the sample app with the stack plan into a throwaway copy of this machine."""
    source = Path(app) if app else SAMPLE_APP
    if not (source / "backend").is_dir() or not (source / "frontend").is_dir():
        raise UsageError(f"{source}: no backend/ and frontend/ here; give --app DIR")
    why = available()
    if why:
        raise DemoUnavailable(
            f"the demo needs a throwaway host, which cannot run here ({why}); "
            f"deploy the example plan to this machine instead: {FALLBACK}"
        )
    paths = DemoPaths(Path(directory).expanduser().resolve() if directory else demo_dir())
    _say(f"Demo directory: {paths.root}")
    _say("  (configuration, known_hosts, state and logs in home/, knowledge base knowledge.db)")
    try:
        with throwaway_host() as host:
            code = _demo(paths, host, source)
    except RuntimeError as exc:  # the host could not start
        raise DemoUnavailable(
            f"the throwaway host did not start ({str(exc).splitlines()[0][:300]}); "
            f"deploy the example plan to this machine instead: {FALLBACK}"
        ) from None
    _say("Throwaway host stopped: everything deployed in it is gone.")
    if code:
        raise SystemExit(code)


def _demo(paths: DemoPaths, host: ThrowawayHost, source: Path) -> int:
    _say(
        f"Throwaway host: a copy-on-write copy of this machine, sshd on 127.0.0.1:{host.port} "
        f"(host key recorded in {paths.known_hosts})"
    )
    write_config(paths, host)
    AppRepo.create(host, source, paths.repo, REPO_INSIDE)
    _say(f"Sample app published in the host as git repository {REPO_INSIDE} (from {source})")
    ports = Ports.free()
    command = deploy_command(paths, host, stack_settings(REPO_INSIDE, ports))
    code = 0
    for n, story in enumerate(DEPLOYS, 1):
        occupy_port(host, ports.http)
        _say(f"\n[{n}/{len(DEPLOYS)}] {story.format(port=ports.http)}", bold=True)
        _say(f"$ AIDEPLOY_HOME={shlex.quote(str(paths.home))} {_shown(command)}\n", bold=True)
        code = _run(paths, command)
        if code:
            break
    answered = []
    if code == 0:
        _say("\nThrough nginx in the throwaway host:", bold=True)
        for url, what in probe(host, ports):
            ok = what.startswith("200 ")
            if ok:
                answered.append(url)
            _say(f"  {url}  {what}", fg="green" if ok else "red")
    else:
        _say(f"\nThe deploy ended with exit code {code}; its state and log are in {paths.home}.")
    report = aideploy_command(paths, "learn", "report", "--kb", str(paths.kb))
    _say(f"\n$ {_shown(report)}\n", bold=True)
    _run(paths, report)
    if code == 0 and len(answered) < 2:
        _say("\nThe deploy completed but the app did not answer through nginx.", fg="red")
        code = 1
    if answered:
        _say("\nThe app answered at:", bold=True)
        for url in answered:
            _say(f"  {url}")
    if sys.stdin.isatty():
        _say("\nThe host keeps serving; press Enter to stop it (everything in it goes).")
        with contextlib.suppress(EOFError):
            input()
    else:
        _say("\nstdin is not a terminal: stopping the throwaway host now.")
    return code
