"""The Grafana dashboard queries exactly the metric names the metrics module exports."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from aideploy.engine import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "aideploy.json"
NAME = re.compile(r"\b(aideploy_[a-zA-Z0-9_]+)")


def _exported() -> dict[str, set[str]]:
    """Family name -> the sample names a fully populated exposition carries."""
    snap = metrics.Snapshot(
        by_status=Counter({"completed": 1}),
        deployment_durations=[42.0],
        step_durations=defaultdict(list, {"build": [3.0]}),
        errors=Counter({"flaky": 1}),
        recoveries=Counter({("fix", "recovered"): 1}),
        first_try=1,
        attempted=1,
        last_end=1.7e9,
        last_success=True,
        hosts=Counter({("web01", "eu", "completed"): 1}),
    )

    class Fixed:
        def collect(self) -> Any:
            return metrics.families(snap)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {s.name for s in family.samples if not s.name.endswith("_created")}
    return out


def _expressions() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in data["panels"]:
        for target in panel.get("targets") or []:
            exprs.append(target["expr"])
    for variable in data.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def test_dashboard_is_valid_grafana_json() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["title"] and data["uid"] and data["panels"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["targets"], panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])


def test_families_match_the_declared_list() -> None:
    assert set(_exported()) == set(metrics.FAMILIES)


def test_every_query_uses_an_exported_name() -> None:
    exported = set().union(*_exported().values())
    used = {name for expr in _expressions() for name in NAME.findall(expr)}
    assert used, "no aideploy metric in the dashboard"
    unknown = used - exported
    assert not unknown, f"dashboard queries names the module does not export: {sorted(unknown)}"


def test_every_exported_family_is_on_some_panel() -> None:
    used = {name for expr in _expressions() for name in NAME.findall(expr)}
    missing = [family for family, names in _exported().items() if not names & used]
    assert not missing, f"exported but on no panel: {missing}"
