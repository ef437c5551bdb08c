"""What a fleet run reports besides its summary: host and group labels on the Prometheus
metrics, the run and host in each host's webhook messages, one message for the run with each
host's result, and the live display (rich table on a terminal, plain lines otherwise)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from aideploy.cli.fleet_progress import FleetProgress, summary_rows
from aideploy.engine import metrics, notify
from aideploy.engine.fleet_state import HostResult, HostRun, RunState, RunStatus
from aideploy.engine.state import DeploymentState, DeploymentStatus
from aideploy.services.config import default_config
from aideploy.services.fleet import _notify
from tests.test_notify import Recorder, server  # noqa: F401  (the webhook fixture)


def _host_state(name: str, host: str, group: str, status: DeploymentStatus) -> DeploymentState:
    state = DeploymentState(name, "p", status, 1, 1, {"hostname": "127.0.0.1"})
    state.options = {
        "run_id": "run-20260101-000000-abcdef",
        "host_name": host,
        "groups": ["all-web", group],
    }
    return state


def test_metrics_carry_host_and_group_labels(tmp_path: Path) -> None:
    states = [
        _host_state("d1", "web01", "eu", DeploymentStatus.COMPLETED),
        _host_state("d2", "web02", "eu", DeploymentStatus.FAILED),
        _host_state("d3", "web02", "eu", DeploymentStatus.COMPLETED),
        DeploymentState("d4", "p", DeploymentStatus.COMPLETED, 1, 1, {"hostname": "x"}),
    ]
    text = metrics.registry(states)
    from prometheus_client import generate_latest

    parsed = {
        (s.labels.get("host"), s.labels.get("group"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(generate_latest(text).decode())
        if family.name == "aideploy_host_deployments"
        for s in family.samples
    }
    assert parsed == {
        ("web01", "eu", "completed"): 1.0,
        ("web02", "eu", "completed"): 1.0,
        ("web02", "eu", "failed"): 1.0,
    }


def test_a_hosts_messages_name_the_run_and_host() -> None:
    state = _host_state("d1", "web01", "eu", DeploymentStatus.FAILED)
    notice = notify.notice_for(state, notify.FAILURE, "root@127.0.0.1:22")
    assert notice.details["run"] == "run-20260101-000000-abcdef"
    assert notice.details["host"] == "web01"


def _run() -> RunState:
    hosts = [
        HostRun("web01", {}, result=HostResult.OK, steps_done=3, steps_total=3, duration=1.5),
        HostRun("web02", {}, result=HostResult.UNHEALTHY, steps_done=3, steps_total=3),
        HostRun("web03", {}, result=HostResult.PENDING),
    ]
    hosts[0].learned = ["network_timeout -> retry_with_backoff"]
    return RunState("run-20260101-000000-abcdef", "p", RunStatus.STOPPED, hosts, reason="why")


def test_the_run_sends_one_message_with_each_hosts_result(server: Recorder) -> None:  # noqa: F811
    config = default_config()
    settings = notify.NotificationSettings(slack_webhook_url=server.url, timeout=2.0)
    config = msgspec.structs.replace(config, notifications=settings)
    _notify(_run(), config)
    (message,) = server.received
    assert "run-20260101-000000-abcdef" in message["text"]
    fields = " ".join(f["text"] for b in message["blocks"] for f in b.get("fields", []))
    assert "web02" in fields and "unhealthy" in fields and "web03" in fields
    assert "1/3 hosts ok" in str(message)


def test_display_rich_table_and_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run()
    progress = FleetProgress(run)
    progress.plain = True
    progress("", "batch", number=1, total=2, hosts=["web01"])
    progress("web01", "host_start", target="root@10.0.0.1:22")
    progress("web01", "step_start", index=2, total=3, name="fetch", description="")
    progress("web01", "error", name="fetch", error_class="network_timeout", tail="")
    progress("web01", "host_end", result="ok", reason=None)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "batch 1/2: web01",
        "web01: started (root@10.0.0.1:22)",
        "web01: step 2/3 fetch",
        "web01: fetch failed: network_timeout",
        "web01: ok",
    ]
    progress("web02", "host_start", target="t")
    progress("web02", "step_start", index=1, total=3, name="prepare", description="")
    assert progress.totals() == "batch 1/2 - 3 hosts: 1 pending, 1 running, 1 ok"
    out = io.StringIO()
    Console(file=out, width=120).print(progress._table())
    table = out.getvalue()
    assert "web02" in table and "1/3 prepare" in table and "running" in table
    rows: Any = summary_rows(run)
    assert rows[0][:3] == ["web01", "ok", "3/3"] and rows[0][5].startswith("network_timeout")
    assert rows[2][1:3] == ["pending", "-"]
