"""Helpers for the fault-injection suites: small TOML plans deployed with the real CLI over SSH
into a throwaway host, with a knowledge base per scenario.

A :class:`Scenario` owns a work directory (config, ``AIDEPLOY_HOME``, plan files) and one SQLite
knowledge base; every :meth:`Scenario.deploy` runs ``python -m aideploy deploy`` against the host
with that same ``--kb``, so the second encounter of a fault is ranked with what the first taught.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aideploy.core.clock import SystemClock
from aideploy.core.recovery import Failure
from aideploy.core.result import Result
from aideploy.engine.recovery import StrategyContext
from aideploy.engine.runner import Runner
from aideploy.knowledge.history import PastOutcome
from aideploy.knowledge.models import STEP_RUNS
from aideploy.knowledge.store import KnowledgeBase
from aideploy.steps.strategies import registry
from tests.support.throwaway import ThrowawayHost

REPORT = (sys.executable, "-m", "aideploy", "learn", "report", "--format", "json")
_DEPLOYMENT_ID = re.compile(r"Deployment (\d{8}-\d{6}-[0-9a-f]+)")


def toml_plan(name: str, steps: list[Mapping[str, Any]], env: Mapping[str, str] = ()) -> str:
    """A TOML plan text (strings are written as TOML literal/basic strings via json)."""
    lines = [f"name = {json.dumps(name)}", "[env]"]
    for key, value in dict(env).items():
        lines.append(f"{key} = {json.dumps(value)}")
    for step in steps:
        lines.append("[[steps]]")
        for key, value in step.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    """One deploy: the CLI's result, the deployment id and its saved state."""

    completed: subprocess.CompletedProcess[str]
    deployment_id: str | None
    state: dict[str, Any]
    seconds: float

    @property
    def output(self) -> str:
        return self.completed.stdout + self.completed.stderr

    def step(self, name: str) -> dict[str, Any]:
        for step in self.state.get("steps", []):
            if step["name"] == name:
                return dict(step)
        raise AssertionError(f"no step {name!r} in {self.state.get('steps')}\n{self.explain()}")

    def explain(self) -> str:
        c = self.completed
        return (
            f"exit {c.returncode} after {self.seconds:.1f}s\nSTDOUT:\n{c.stdout[-5000:]}\n"
            f"STDERR:\n{c.stderr[-5000:]}\nSTATE steps: {json.dumps(self.state.get('steps'))}"
        )


@dataclass
class Scenario:
    host: ThrowawayHost
    work: Path
    auto_approve: bool = False
    max_retries: int = 3
    kb: Path = field(init=False)
    shared_kb: bool = field(init=False)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        # one KB per scenario; AIDEPLOY_FAULTS_KB puts the whole suite in one file (for
        # `aideploy learn report --kb FILE` afterwards)
        shared = os.environ.get("AIDEPLOY_FAULTS_KB")
        self.shared_kb = bool(shared)
        self.kb = Path(shared) if shared else self.work / "kb.sqlite"
        self.home = self.work / "home"
        self.config = self.work / "ai_deployment_config.json"
        self.config.write_text(
            json.dumps(
                {
                    "version": "1.0",
                    "ssh": {"known_hosts": str(self.work / "known_hosts"), "connect_retries": 2},
                    "deployment": {
                        "max_retries": self.max_retries,
                        "retry_delay": 0.2,
                        "command_timeout": 120,
                        "auto_approve": self.auto_approve,
                    },
                }
            )
        )

    def plan(self, name: str, text: str) -> Path:
        path = self.work / f"{name}.toml"
        path.write_text(text)
        return path

    def steps(self, name: str, steps: list[Mapping[str, Any]], env: Mapping[str, str] = ()) -> Path:
        """The plan ``faults-<name>`` of these steps, written to the work directory."""
        return self.plan(name, toml_plan(f"faults-{name}", steps, env))

    def deploy(
        self,
        plan: Path,
        *extra: str,
        timeout: float = 300,
        on_error: Callable[[], None] | None = None,
    ) -> Run:
        """Deploy ``plan``; ``on_error`` is called once, as soon as a step has failed (the saved
        state names an error class), while the deployment goes on."""
        started = time.monotonic()
        before = set(self._states())
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aideploy",
                    "--config",
                    str(self.config),
                    "deploy",
                    "--server",
                    "127.0.0.1",
                    "--port",
                    str(self.host.port),
                    "--user",
                    "root",
                    "--key-file",
                    str(self.host.key_file),
                    "--accept-new-host-key",
                    "--plan",
                    str(plan),
                    "--kb",
                    str(self.kb),
                    "--auto",
                    *extra,
                ],
                stdout=out,
                stderr=err,
                text=True,
                cwd=self.work,
                env={**os.environ, "AIDEPLOY_HOME": str(self.home), "NO_COLOR": "1"},
                stdin=subprocess.DEVNULL,
            )
            try:
                while process.poll() is None:
                    if time.monotonic() - started > timeout:
                        raise AssertionError(f"deploy of {plan} still running after {timeout}s")
                    if on_error is not None and self._failed_step(before):
                        on_error()
                        on_error = None
                    time.sleep(0.1)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait()
            out.seek(0)
            err.seek(0)
            completed = subprocess.CompletedProcess(
                process.args, process.returncode, out.read(), err.read()
            )
        seconds = time.monotonic() - started
        found = _DEPLOYMENT_ID.search(completed.stdout + completed.stderr)
        deployment_id = found.group(1) if found else None
        state: dict[str, Any] = {}
        if deployment_id:
            path = self.home / "deployments" / f"{deployment_id}.json"
            if path.exists():
                state = json.loads(path.read_text())
        return Run(completed, deployment_id, state, seconds)

    def _states(self) -> list[Path]:
        folder = self.home / "deployments"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def _failed_step(self, before: set[Path]) -> bool:
        for path in self._states():
            if path in before:
                continue
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written
            if any(step.get("error_class") for step in state.get("steps", [])):
                return True
        return False

    def outcomes(self, deployment_id: str | None = None) -> list[PastOutcome]:
        """The attempts the knowledge base recorded (of one deployment, or all)."""
        kb = KnowledgeBase.open(str(self.kb))
        try:
            rows = kb.past_outcomes()
        finally:
            kb.close()
        return [o for o in rows if deployment_id is None or o.deployment_id == deployment_id]

    def step_output(self, run: Run, step: str) -> str:
        """The output tails the knowledge base kept of ``step``'s runs in ``run``."""
        c = STEP_RUNS.c
        with KnowledgeBase.open(str(self.kb)) as kb, kb.reading() as conn:
            query = select(c.output_tail).where(
                c.deployment_id == run.deployment_id, c.step == step
            )
            return "\n".join(tail for (tail,) in conn.execute(query.order_by(c.id)))

    def recorded(self, run: Run) -> list[tuple[str, str, str]]:
        """(error class, strategy, outcome) of each attempt the KB recorded for ``run``."""
        return [(o.error_class, o.strategy, o.outcome) for o in self.outcomes(run.deployment_id)]

    def report(self) -> dict[str, Any]:
        """``aideploy learn report --format json`` over this scenario's knowledge base."""
        completed = subprocess.run(
            [*REPORT, "--kb", str(self.kb)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "AIDEPLOY_HOME": str(self.home), "NO_COLOR": "1"},
            timeout=120,
        )
        report: dict[str, Any] = json.loads(completed.stdout)
        return report


def assert_recovered(run: Run, step: str, strategies: list[str], error_class: str) -> None:
    """The deploy completed; ``step`` failed with ``error_class``, the ``strategies`` were applied
    in this order and the last one fixed it (one more step run than strategies)."""
    assert run.completed.returncode == 0, run.explain()
    assert run.state.get("status") == "completed", run.explain()
    s = run.step(step)
    assert s["status"] == "done", run.explain()
    assert s["error_class"] == error_class, run.explain()
    assert s["recoveries"] == strategies, run.explain()
    assert s["attempts"] == len(strategies) + 1, run.explain()


def assert_recovered_first_try(run: Run, step: str, strategy: str, error_class: str) -> None:
    """The deploy completed; ``step`` failed once with ``error_class`` and ``strategy`` fixed it."""
    assert_recovered(run, step, [strategy], error_class)


def wait_until(host: ThrowawayHost, probe: str, limit: float = 120.0) -> None:
    """Poll ``probe`` inside the host until it succeeds (``limit`` only bounds a probe that
    never does: a loaded machine is waited for, not failed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if host.run(probe).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"inside the throwaway host, never true: {probe}")


def apply_strategy(
    host: ThrowawayHost,
    name: str,
    error_class: str,
    details: Mapping[str, str],
    settings: Mapping[str, str] = (),
) -> bool:
    """Apply the built-in strategy ``name`` on the host directly (over SSH, as the executor does)
    for a failure with these details and plan variables; what it returned."""
    strategy = registry(plugins=False)[name]
    empty = Result(command="", host=host.host, exit_code=1, stdout="", stderr="", duration=0.0)
    failure = Failure("check", empty, error_class, "", dict(details))
    with host.connector() as connector:
        ctx = StrategyContext(
            runner=Runner(connector),
            failure=failure,
            clock=SystemClock(),
            approve=lambda question: False,
            settings=dict(settings),
        )
        return strategy.apply(ctx)


def dpkg_state(host: ThrowawayHost) -> str:
    """Every package's name, status and version inside the host."""
    return host.run("dpkg-query -W -f='${Package} ${Status} ${Version}\\n'", check=True).stdout


def owned_by(host: ThrowawayHost, user: str, root: str, *folders: str) -> None:
    """``user`` exists inside the host and owns ``root`` (created with ``folders`` under it)."""
    made = " ".join(f"{root}/{f}" for f in folders) or root
    host.run(
        f"id {user} >/dev/null 2>&1 || useradd -m -s /bin/sh {user}; "
        f"mkdir -p {made} && chown -R {user}: {root}",
        check=True,
    )
