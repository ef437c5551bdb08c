"""Prometheus metrics: a node_exporter textfile written after each deploy, and a live endpoint.

Everything is computed from what aideploy already keeps, the saved deployment states under
``$AIDEPLOY_HOME`` (each step's history of errors and recovery outcomes is recorded there by the
executor as it publishes them), at collection time: the textfile after a deploy and every
scrape of the HTTP endpoint see the same numbers, and a missed write loses nothing. The official
client library does the exposition (its own :class:`CollectorRegistry`, ``write_to_textfile``,
which writes atomically, and ``start_http_server``).

Families (all prefixed ``aideploy_``) are listed in :data:`FAMILIES`; the Grafana dashboard in
``dashboards/aideploy.json`` queries exactly these.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from aideploy.core import paths
from aideploy.core.atomic import write_atomic
from aideploy.core.private import FILE_MODE, private_dir
from aideploy.core.schema import Port, check_hostname, checked
from aideploy.engine.state import (
    DeploymentState,
    DeploymentStatus,
    Incident,
    StepStatus,
    list_states,
)

log = logging.getLogger("aideploy.metrics")

#: every exported family: name -> type
FAMILIES: dict[str, str] = {
    "aideploy_deployments": "gauge",
    "aideploy_deployment_duration_seconds": "histogram",
    "aideploy_step_duration_seconds": "histogram",
    "aideploy_errors": "counter",
    "aideploy_recoveries": "counter",
    "aideploy_first_try_recovery_ratio": "gauge",
    "aideploy_last_deployment_end_timestamp_seconds": "gauge",
    "aideploy_last_deployment_success": "gauge",
    "aideploy_host_deployments": "gauge",
}

DEPLOYMENT_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
STEP_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

_RECOVERY_OUTCOMES = ("recovered", "failed")  # "skipped" (not approved) is not an attempt


class MetricsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    textfile: Annotated[
        Path | None,
        Meta(
            description="Prometheus textfile written after each deployment (for node_exporter's "
            "textfile collector, e.g. /var/lib/node_exporter/textfile_collector/aideploy.prom; "
            "default: <state dir>/metrics/aideploy.prom)."
        ),
    ] = None
    textfile_mode: Annotated[
        Literal["0600", "0640", "0644"],
        Meta(
            description="Mode of the textfile. 0600 (private to this user) unless node_exporter, "
            "running as another user, must read it: then 0640 (its group) or 0644 (everyone)."
        ),
    ] = "0600"
    http_port: Annotated[
        Port | None,
        Meta(
            description="Serve live metrics on this port while a deployment runs (off when unset)."
        ),
    ] = None
    http_address: Annotated[
        str, checked(check_hostname, "Address the live metrics endpoint listens on.")
    ] = "127.0.0.1"


# -- what the metrics are computed from --------------------------------------------------------


@dataclass
class Snapshot:
    """The numbers behind every family, computed from states and logs."""

    by_status: Counter[str] = field(default_factory=Counter)
    deployment_durations: list[float] = field(default_factory=list)
    step_durations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    recoveries: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_try: int = 0  # errors recovered by the first strategy tried
    attempted: int = 0  # errors for which at least one strategy was tried
    last_end: float | None = None
    last_success: bool | None = None
    #: deployments of fleet runs by (inventory host, its most specific group, status)
    hosts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def first_try_ratio(self) -> float | None:
        return self.first_try / self.attempted if self.attempted else None


def _seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def add_history(snapshot: Snapshot, history: Iterable[Incident]) -> None:
    """Count errors, recoveries and first-try recoveries from one deployment's step histories.

    A failing step is one incident until a recovery fixes it; the incident counts as a first-try
    recovery when the first strategy actually tried (not skipped) fixed it.
    """
    open_incident = False  # an error whose first attempt is not yet known
    decided = False  # the current incident's first attempt is known
    for entry in history:
        if entry.kind == "error":
            snapshot.errors[entry.error_class or "unknown"] += 1
            if not decided:
                open_incident = True
            continue
        outcome = entry.outcome or "unknown"
        snapshot.recoveries[(entry.strategy or "unknown", outcome)] += 1
        if outcome not in _RECOVERY_OUTCOMES:
            continue
        if open_incident:
            snapshot.attempted += 1
            snapshot.first_try += outcome == "recovered"
            decided = True
            open_incident = False
        if outcome == "recovered":
            decided = False  # a later failure of this step is a new incident


#: deployments whose start-to-end time is no deployment's duration (still going; given up)
_NO_DURATION = (DeploymentStatus.RUNNING, DeploymentStatus.ABANDONED)


def add_state(snapshot: Snapshot, state: DeploymentState) -> None:
    snapshot.by_status[state.status.value] += 1
    host = state.options.get("host_name")
    if host:
        groups = state.options.get("groups") or [""]
        snapshot.hosts[(str(host), str(groups[-1]), state.status.value)] += 1
    start, end = _seconds(state.start_time), _seconds(state.end_time)
    if start is not None and end is not None and state.status not in _NO_DURATION:
        snapshot.deployment_durations.append(max(0.0, end - start))
    for step in state.steps:
        if step.status not in (StepStatus.DONE, StepStatus.SKIPPED):
            continue  # a step the deployment stopped in has an end, but did not finish
        began, ended = _seconds(step.started_at), _seconds(step.ended_at)
        if began is not None and ended is not None:
            snapshot.step_durations[step.name].append(max(0.0, ended - began))
    for step in state.steps:
        if step.history:
            add_history(snapshot, step.history)
        elif step.error_class:  # a state from before histories: the step's last error class
            snapshot.errors[step.error_class] += 1


def snapshot(states: Iterable[DeploymentState] | None = None) -> Snapshot:
    found = list_states() if states is None else list(states)
    snap = Snapshot()
    finished = []
    for state in found:
        add_state(snap, state)
        end = _seconds(state.end_time)
        if end is not None and state.status is not DeploymentStatus.RUNNING:
            finished.append((end, state))
    if finished:
        end, newest = max(finished, key=lambda pair: pair[0])
        snap.last_end = end
        snap.last_success = newest.status is DeploymentStatus.COMPLETED
    return snap


# -- exposition ----------------------------------------------------------------------------------


def _histogram(
    family: HistogramMetricFamily,
    labels: list[str],
    values: list[float],
    buckets: tuple[float, ...],
) -> None:
    cumulative = [(_le(b), float(sum(1 for v in values if v <= b))) for b in buckets]
    cumulative.append(("+Inf", float(len(values))))
    family.add_metric(labels, cumulative, sum_value=math.fsum(values))


def _le(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def families(snap: Snapshot) -> list[Metric]:
    """The metric families for one snapshot (names as in :data:`FAMILIES`)."""
    out: list[Metric] = []
    deployments = GaugeMetricFamily(
        "aideploy_deployments", "Saved deployments by status.", labels=["status"]
    )
    for status in DeploymentStatus:
        deployments.add_metric([status.value], float(snap.by_status.get(status.value, 0)))
    out.append(deployments)

    duration = HistogramMetricFamily(
        "aideploy_deployment_duration_seconds",
        "Wall-clock duration of finished deployments (start to end, resumes included).",
    )
    _histogram(duration, [], snap.deployment_durations, DEPLOYMENT_BUCKETS)
    out.append(duration)

    steps = HistogramMetricFamily(
        "aideploy_step_duration_seconds",
        "Duration of each finished step (one-second resolution).",
        labels=["step"],
    )
    for name in sorted(snap.step_durations):
        _histogram(steps, [name], snap.step_durations[name], STEP_BUCKETS)
    out.append(steps)

    errors = CounterMetricFamily(
        "aideploy_errors", "Detected step failures by error class.", labels=["error_class"]
    )
    for name, count in sorted(snap.errors.items()):
        errors.add_metric([name], float(count))
    out.append(errors)

    recoveries = CounterMetricFamily(
        "aideploy_recoveries",
        "Recovery strategies applied, by outcome (recovered, failed, skipped).",
        labels=["strategy", "outcome"],
    )
    for (strategy, outcome), count in sorted(snap.recoveries.items()):
        recoveries.add_metric([strategy, outcome], float(count))
    out.append(recoveries)

    ratio = GaugeMetricFamily(
        "aideploy_first_try_recovery_ratio",
        "Share of failures fixed by the first recovery strategy tried.",
    )
    if snap.first_try_ratio is not None:
        ratio.add_metric([], snap.first_try_ratio)
    out.append(ratio)

    last_end = GaugeMetricFamily(
        "aideploy_last_deployment_end_timestamp_seconds",
        "Unix time the newest finished deployment ended.",
    )
    last_ok = GaugeMetricFamily(
        "aideploy_last_deployment_success", "1 if the newest finished deployment completed."
    )
    if snap.last_end is not None:
        last_end.add_metric([], snap.last_end)
        last_ok.add_metric([], 1.0 if snap.last_success else 0.0)
    out.extend([last_end, last_ok])

    hosts = GaugeMetricFamily(
        "aideploy_host_deployments",
        "Saved deployments of fleet runs by inventory host, its group and status.",
        labels=["host", "group", "status"],
    )
    for (host, group, state), count in sorted(snap.hosts.items()):
        hosts.add_metric([host, group, state], float(count))
    out.append(hosts)
    return out


class StateCollector(Collector):
    """Collects from the saved states and logs at each collection (live while deploying)."""

    def __init__(self, states: Iterable[DeploymentState] | None = None) -> None:
        self._states = None if states is None else list(states)

    def collect(self) -> Iterator[Metric]:
        yield from families(snapshot(self._states))


def registry(states: Iterable[DeploymentState] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StateCollector(states))
    return reg


def default_textfile() -> Path:
    return paths.home() / "metrics" / "aideploy.prom"


def write_textfile(
    path: Path | None = None,
    *,
    states: Iterable[DeploymentState] | None = None,
    mode: int = FILE_MODE,
) -> Path:
    """Write the exposition to ``path`` atomically (temp file + rename) and return the path.

    The file is 0600 unless ``mode`` (``metrics.textfile_mode``) lets node_exporter's user read
    it; a directory created for it is 0700 (the default one under ``$AIDEPLOY_HOME``) or, for a
    configured path, 0700 only when ``mode`` is private (else 0755, so the collector can enter).
    """
    if path:
        target = Path(path).expanduser()
        if mode & 0o077:
            target.parent.mkdir(parents=True, exist_ok=True)
        else:
            private_dir(target.parent)
    else:
        target = paths.private_home("metrics") / "aideploy.prom"
    write_atomic(target, generate_latest(registry(states)), mode=mode)
    return target


def try_write_textfile(settings: MetricsSettings | None = None) -> Path | None:
    """:func:`write_textfile` at the end of a deploy: a failure is logged, never raised."""
    try:
        if settings is None:
            return write_textfile()
        return write_textfile(settings.textfile, mode=int(settings.textfile_mode, 8))
    except Exception as exc:
        log.error("metrics: cannot write the textfile: %s", exc)
        return None


class Endpoint:
    """The live ``/metrics`` endpoint; ``close()`` stops it."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.server, self.thread = start_http_server(port, addr=address, registry=registry())
        self.port = int(self.server.server_address[1])
        self.address = address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(settings: MetricsSettings) -> Endpoint | None:
    """Start the endpoint if the settings ask for it; a busy port is logged, not raised."""
    if not settings.http_port:
        return None
    try:
        return Endpoint(settings.http_port, settings.http_address)
    except OSError as exc:
        log.error(
            "metrics: cannot listen on %s:%s: %s", settings.http_address, settings.http_port, exc
        )
        return None
