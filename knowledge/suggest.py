"""Optimisation suggestions (``aideploy learn suggest``, the guide's ``optimization_suggestions``).

Four kinds, each citing the evidence it rests on:

- ``slow_step``: the slowest steps (mean duration of their successful runs) and their trend (the
  newer half of the runs against the older half);
- ``caching``: steps that ran again although the plan's variables were the same as in the
  deployment before on the same host, and were never skipped then (a check would let an unchanged
  deploy skip them) — from the deployment states;
- ``recurring_recovery``: failures recovered again and again in the same step: the cause is still
  there; ``rules/prevention.toml`` says which change removes it, per error class;
- ``resources``: what the server checks reported about memory and disk, and out-of-memory or
  disk-full failures, per host.
"""

from __future__ import annotations

import itertools
import re
import statistics
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from aideploy.knowledge.models import ATTEMPTS, DEPLOYMENTS, SIGNATURES, STEP_RUNS

if TYPE_CHECKING:
    from aideploy.engine.state import DeploymentState
    from aideploy.knowledge.store import KnowledgeBase

PREVENTION = Path(__file__).resolve().parent / "rules" / "prevention.toml"
KINDS = ("slow_step", "caching", "recurring_recovery", "resources")
#: a step, recovery or host check needs this many observations before it is suggested about
MIN_EVIDENCE = 3
#: a step whose newer runs take this much longer than its older ones is "getting slower"
SLOWER = 0.2
#: memory (MB) the server checks reported below which a host is called short of memory
LOW_MEMORY_MB = 1024
TOP_SLOW = 3

_MEMORY_OK = re.compile(r"(\d+) MB memory available")
_MEMORY_SHORT = re.compile(r"Cannot allocate memory: (\d+) MB available")
_DISK_SHORT = re.compile(r"No space left on device: (\d+) MB free on (\S+)")


@dataclass(frozen=True)
class Suggestion:
    kind: str
    subject: str  # the step, error class or host it is about
    advice: str
    evidence: str  # the counts and durations it rests on, in words
    figures: Mapping[str, float | int | str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "advice": self.advice,
            "evidence": self.evidence,
            "figures": dict(self.figures),
        }


@cache
def prevention() -> dict[str, str]:
    """Error class -> the change that prevents it (``rules/prevention.toml``)."""
    data = tomllib.loads(PREVENTION.read_text(encoding="utf-8"))
    return {name: str(entry["advice"]) for name, entry in data.items()}


def suggest(
    kb: KnowledgeBase, states: Sequence[DeploymentState] = (), *, min_evidence: int = MIN_EVIDENCE
) -> tuple[Suggestion, ...]:
    """Every suggestion the knowledge base and the deployment ``states`` support."""
    with kb.reading() as conn:
        runs = conn.execute(
            select(STEP_RUNS.c.step, STEP_RUNS.c.duration, STEP_RUNS.c.exit_code).order_by(
                STEP_RUNS.c.at, STEP_RUNS.c.id
            )
        ).all()
        checks = conn.execute(
            select(DEPLOYMENTS.c.host, STEP_RUNS.c.output_tail)
            .join(DEPLOYMENTS, DEPLOYMENTS.c.id == STEP_RUNS.c.deployment_id)
            .where(STEP_RUNS.c.step == "validate_server")
        ).all()
        attempts = conn.execute(
            select(
                SIGNATURES.c.error_class,
                ATTEMPTS.c.step,
                ATTEMPTS.c.strategy,
                ATTEMPTS.c.deployment_id,
                ATTEMPTS.c.duration,
                DEPLOYMENTS.c.host,
            )
            .join(SIGNATURES, SIGNATURES.c.id == ATTEMPTS.c.signature_id)
            .outerjoin(DEPLOYMENTS, DEPLOYMENTS.c.id == ATTEMPTS.c.deployment_id)
            .where(ATTEMPTS.c.outcome == "recovered", ATTEMPTS.c.origin == "local")
        ).all()
    durations: dict[str, list[float]] = defaultdict(list)
    for step, duration, code in runs:
        if code == 0:
            durations[step].append(float(duration))
    return (
        *_slow_steps(durations, min_evidence),
        *_caching(states, durations, min_evidence),
        *_recurring(attempts, min_evidence),
        *_resources(checks, attempts),
    )


def _slow_steps(durations: Mapping[str, list[float]], least: int) -> list[Suggestion]:
    measured = {step: d for step, d in durations.items() if len(d) >= least}
    slowest = sorted(measured, key=lambda s: statistics.fmean(measured[s]), reverse=True)
    found = []
    for step in slowest[:TOP_SLOW]:
        runs = measured[step]
        mean = statistics.fmean(runs)
        half = len(runs) // 2
        older, newer = statistics.fmean(runs[:half]), statistics.fmean(runs[half:])
        trend = (newer - older) / older if older > 0 else 0.0
        advice = f"{step} is among the slowest steps"
        if trend > SLOWER:
            advice += f" and is getting slower ({trend:+.0%})"
        advice += ": look at what it repeats on every run (downloads, builds, restarts)"
        found.append(
            Suggestion(
                "slow_step",
                step,
                advice,
                f"{len(runs)} successful runs, mean {mean:.1f}s, older half {older:.1f}s, "
                f"newer half {newer:.1f}s",
                {"runs": len(runs), "mean_seconds": round(mean, 2), "trend": round(trend, 4)},
            )
        )
    return found


def _caching(
    states: Sequence[DeploymentState], durations: Mapping[str, list[float]], least: int
) -> list[Suggestion]:
    """Steps that ran again with the same variables as the deployment before on the same host."""
    by_target: dict[tuple[str, str], list[DeploymentState]] = defaultdict(list)
    for state in states:
        if state.status.value == "completed":
            host = str(state.server_info.get("hostname") or "")
            by_target[(state.plan, host)].append(state)
    reran: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for runs in by_target.values():
        runs.sort(key=lambda s: s.start_time)
        for before, after in itertools.pairwise(runs):
            if before.options.get("env") != after.options.get("env"):
                continue
            for ran in after.steps:
                if ran.status.value == "done":
                    reran[ran.name] += 1
                elif ran.status.value == "skipped":
                    skipped[ran.name] += 1
    found = []
    for step, count in reran.most_common():
        if count < least or skipped[step]:
            continue
        mean = statistics.fmean(durations[step]) if durations.get(step) else 0.0
        found.append(
            Suggestion(
                "caching",
                step,
                f"{step} runs on every deploy even when nothing changed: give it a check "
                "(is the work done already?) so an unchanged deploy skips it",
                f"ran {count} times with the same variables as the deployment before on the "
                f"same host, never skipped; mean {mean:.1f}s a run",
                {"unchanged_runs": count, "skipped": 0, "mean_seconds": round(mean, 2)},
            )
        )
    return found


def _recurring(attempts: Iterable[Any], least: int) -> list[Suggestion]:
    recovered: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in attempts:
        recovered[(row.error_class, row.step)].append(row)
    found = []
    ranked = sorted(recovered.items(), key=lambda item: len(item[1]), reverse=True)
    for (error_class, step), rows in ranked:
        deployments = {r.deployment_id for r in rows if r.deployment_id}
        if len(deployments) < least:
            continue
        strategy, used = Counter(r.strategy for r in rows).most_common(1)[0]
        seconds = sum(float(r.duration) for r in rows)
        advice = prevention().get(error_class, "find and remove the cause instead of recovering")
        found.append(
            Suggestion(
                "recurring_recovery",
                f"{error_class} in {step}",
                advice,
                f"recovered {len(rows)} times in {len(deployments)} deployments, "
                f"{used} of them by {strategy}; {seconds:.0f}s spent recovering",
                {
                    "recoveries": len(rows),
                    "deployments": len(deployments),
                    "strategy": strategy,
                    "seconds_recovering": round(seconds, 1),
                },
            )
        )
    return found


def _resources(checks: Iterable[Any], attempts: Iterable[Any]) -> list[Suggestion]:
    memory: dict[str, list[int]] = defaultdict(list)
    disk: dict[str, list[int]] = defaultdict(list)
    for host, tail in checks:
        for pattern in (_MEMORY_OK, _MEMORY_SHORT):
            memory[host].extend(int(m) for m in pattern.findall(tail or ""))
        disk[host].extend(int(free) for free, _ in _DISK_SHORT.findall(tail or ""))
    failures: Counter[tuple[str, str]] = Counter(
        (row.host or "?", row.error_class)
        for row in attempts
        if row.error_class in ("out_of_memory", "disk_full")
    )
    found = []
    for host, seen in sorted(memory.items()):
        low = min(seen) if seen else None
        ooms = failures[(host, "out_of_memory")]
        if low is not None and (low < LOW_MEMORY_MB or ooms):
            found.append(
                Suggestion(
                    "resources",
                    host,
                    f"{host} is short of memory: {prevention()['out_of_memory']}",
                    f"the server check saw {low} MB available at least, over {len(seen)} checks; "
                    f"{ooms} out-of-memory failures recovered",
                    {"min_memory_mb": low, "checks": len(seen), "out_of_memory": ooms},
                )
            )
    hosts = {host for host, _ in failures} | {h for h, free in disk.items() if free}
    for host in sorted(hosts):
        full = failures[(host, "disk_full")]
        short = disk.get(host, [])
        if not full and not short:
            continue
        found.append(
            Suggestion(
                "resources",
                host,
                f"{host} runs out of disk: {prevention()['disk_full']}",
                f"{len(short)} server checks refused for want of disk "
                f"(least free {min(short) if short else '-'} MB); {full} disk-full failures "
                "recovered",
                {"disk_checks_failed": len(short), "disk_full": full},
            )
        )
    return found
