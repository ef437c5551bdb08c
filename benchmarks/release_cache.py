"""Redeploys of small changes on one throwaway host, timed: what the release cache saves, and that
the switch drops no request.

After a cold deploy of the sample app (not counted), each round commits and redeploys, with the
CLI as a user runs it (``aideploy -v deploy --plan stack``):

* **backend**: one file of the Django app changed: the venv is copied from the live release
  (0 packages installed) and the frontend build too (npm does not run);
* **frontend**: one file of the React app changed: the venv is copied, npm builds;
* **requirements**: a comment added to requirements.txt: the venv is rebuilt, pip's packages
  coming from its cache in ``shared/cache/pip``.

For each: the CLI's wall time, each step's time as the CLI reports it, and the packages pip
installed. Then one more backend change is redeployed while a client requests ``/`` and
``/api/health/`` through nginx over HTTPS (a new connection each, about 50 a second, so the client
does not take the 2 cores from the deploy): how many requests it made and how many failed. The
CLI's own start-up (interpreter and imports) is measured apart.

Needs what the throwaway host needs (root, unshare, overlayfs, sshd). Usage:

    .venv/bin/python benchmarks/release_cache.py [--rounds 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aideploy.cli.demo import (
    DOMAIN,
    REPO_INSIDE,
    SAMPLE_APP,
    DemoPaths,
    Ports,
    aideploy_command,
    set_options,
    stack_settings,
    write_config,
)
from aideploy.engine.throwaway import AppRepo, ThrowawayHost, available, http_get, throwaway_host

STEP_DONE = re.compile(r"(\w+): done in ([0-9.]+)s")
INSTALLED = re.compile(r"python environment: .*?(\d+) packages installed")


class RequestLoop:
    """HTTPS requests to ``/`` and ``/api/health/`` through nginx until stopped."""

    def __init__(self, port: int, certificate: str) -> None:
        self.url = f"https://127.0.0.1:{port}"
        self.certificate = certificate
        self.requests = 0
        self.failed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            for path in ("/", "/api/health/"):
                self.requests += 1
                try:
                    status, _ = http_get(
                        self.url + path, host_header=DOMAIN, certificate=self.certificate
                    )
                except OSError:
                    status = 0
                self.failed += status != 200
                time.sleep(0.02)

    def __enter__(self) -> RequestLoop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=60)


def deploy(paths: DemoPaths, host: ThrowawayHost, settings: dict[str, str]) -> tuple[float, str]:
    command = aideploy_command(
        paths,
        "-v",
        "deploy",
        *host.ssh_options(),
        "--plan",
        "stack",
        "--kb",
        str(paths.kb),
        *set_options(settings),
    )
    env = {**os.environ, "AIDEPLOY_HOME": str(paths.home), "NO_COLOR": "1"}
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


def changes(number: int) -> dict[str, dict[str, str]]:
    """The three changes of a round, each a different text every round."""
    views = (SAMPLE_APP / "backend" / "notes" / "views.py").read_text()
    main = (SAMPLE_APP / "frontend" / "src" / "main.jsx").read_text()
    requirements = (SAMPLE_APP / "backend" / "requirements.txt").read_text()
    return {
        "backend": {"backend/notes/views.py": f"{views}\n# round {number}\n"},
        "frontend": {"frontend/src/main.jsx": f"{main}\n// round {number}\n"},
        "requirements": {"backend/requirements.txt": f"{requirements}# round {number}\n"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--show", action="store_true", help="print each redeploy's CLI output")
    args = parser.parse_args()
    why = available()
    if why:
        sys.exit(f"throwaway host unavailable: {why}")
    results: dict[str, Any] = {"rounds": []}
    with tempfile.TemporaryDirectory(prefix="aideploy-bench.") as tmp, throwaway_host() as host:
        paths = DemoPaths(Path(tmp) / "run")
        write_config(paths, host)
        repo = AppRepo.create(host, SAMPLE_APP, paths.repo, REPO_INSIDE)
        ports = Ports.free()
        settings = stack_settings(REPO_INSIDE, ports)
        took, _ = deploy(paths, host, settings)
        results["cold_s"] = round(took, 2)
        print(f"cold deploy (not counted): {took:.1f}s")
        certificate = host.read("/etc/aideploy/sampleapp/tls/fullchain.pem") or ""
        for number in range(1, args.rounds + 1):
            row: dict[str, dict[str, Any]] = {}
            for kind, files in changes(number).items():
                repo.commit(f"{kind} change, round {number}", files)
                took, out = deploy(paths, host, settings)
                if args.show:
                    print(out)
                steps = {name: float(s) for name, s in STEP_DONE.findall(out)}
                installed = INSTALLED.search(out)
                row[kind] = {
                    "deploy_s": round(took, 2),
                    **{f"{name}_s": seconds for name, seconds in steps.items()},
                    "packages_installed": int(installed.group(1)) if installed else -1,
                }
                print(
                    f"round {number} {kind}: {took:.1f}s, "
                    f"{row[kind]['packages_installed']} packages installed; steps: "
                    + ", ".join(f"{n} {t:.1f}" for n, t in steps.items() if t >= 0.3)
                )
            files = changes(number)["backend"]
            files["backend/notes/views.py"] += "# under load\n"
            repo.commit(f"backend change under load, round {number}", files)
            with RequestLoop(ports.https, certificate) as loop:
                took, _ = deploy(paths, host, settings)
            row["under_load"] = {
                "deploy_s": round(took, 2),
                "requests": loop.requests,
                "failed_requests": loop.failed,
            }
            print(
                f"round {number} backend change under load: {took:.1f}s; "
                f"{loop.requests} requests during it, {loop.failed} failed"
            )
            results["rounds"].append(row)
    results["cli_startup_s"] = round(startup(), 3)
    print(f"\nmedians over {args.rounds} rounds (CLI start-up {results['cli_startup_s']:.2f}s):")
    for kind in ("backend", "frontend", "requirements"):
        rows = [r[kind] for r in results["rounds"]]
        medians = {
            key: round(statistics.median(r.get(key, 0.0) for r in rows), 2)
            for key in ("deploy_s", "configure_backend_s", "configure_frontend_s")
        }
        results[f"median_{kind}"] = medians
        installed = sorted({int(r["packages_installed"]) for r in rows})
        print(
            f"  {kind}: deploy {medians['deploy_s']:.1f}s, configure_backend "
            f"{medians['configure_backend_s']:.1f}s, configure_frontend "
            f"{medians['configure_frontend_s']:.1f}s; packages installed {installed}"
        )
    loaded = [r["under_load"] for r in results["rounds"]]
    results["under_load"] = {
        "requests": sum(int(r["requests"]) for r in loaded),
        "failed_requests": sum(int(r["failed_requests"]) for r in loaded),
    }
    print(
        f"  under load: {results['under_load']['requests']} requests during "
        f"{len(loaded)} redeploys, {results['under_load']['failed_requests']} failed"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
