"""The report's aggregate queries agree with a plain Python reading of the same rows.

The report answers its strategy, best-strategy and first-try sections from grouped passes and the
encounter numbers stored on failures' first attempts; this test recomputes every section from the
raw attempts, by their definitions, on a random KB with skipped outcomes, imported weights,
attempts outside any deployment, several attempts per failure and attempts spread over weeks,
with and without filters, on both backends.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from aideploy.core.strategies import CATALOGUE
from aideploy.knowledge.html_report import build_html
from aideploy.knowledge.models import ATTEMPTS, DEPLOYMENTS, SIGNATURES
from aideploy.knowledge.report import Filters, build_report, render, strategy_table
from aideploy.knowledge.store import KnowledgeBase

T0 = datetime(2025, 3, 1, 22, 0, 0)
CLASSES = ["apt_lock", "port_in_use", "disk_full"]
STRATEGIES = ["wait", "free_port", "cleanup", "retry"]
OUTCOMES = ["recovered", "failed", "skipped"]
#: risk and description the report gives each strategy: the catalogue's for the built-in
#: free_port (not its KB copy's), the KB's row for cleanup, nothing for the others
DESCRIBED = {
    "free_port": ("high", CATALOGUE["free_port"].description),
    "cleanup": ("medium", "Clean up the disk."),
}


def _fill(kb: KnowledgeBase, seed: int = 3) -> None:
    rng = random.Random(seed)
    deps = [
        {
            "id": f"d{i}",
            "profile": rng.choice(["prod", "staging"]),
            "host": rng.choice(["web1", "web2"]),
            "plan": "default",
            "status": rng.choice(["succeeded", "failed"]),
            "started_at": T0 + timedelta(hours=13 * i),
        }
        for i in range(30)
    ]
    sigs = [
        {
            "text": f"E: error {i}",
            "hash": f"h{i}",
            "error_class": CLASSES[i % len(CLASSES)],
            "first_seen": T0,
            "last_seen": T0 + timedelta(days=20),
            "count": i + 1,
        }
        for i in range(12)
    ]
    with kb.writing() as conn:
        conn.execute(insert(DEPLOYMENTS), deps)
        conn.execute(insert(SIGNATURES), sigs)
        sig_ids = [sid for (sid,) in conn.execute(select(SIGNATURES.c.id))]
        rows: list[dict[str, Any]] = []
        # the encounter numbers as record_attempt hands them out, attempt by attempt
        decided: set[tuple[str, int]] = set()
        encounters: dict[int, int] = defaultdict(int)
        for i in range(600):
            dep = rng.choice(deps) if rng.random() < 0.9 else None
            start = dep["started_at"] if dep else T0 + timedelta(hours=rng.randrange(400))
            sid = rng.choice(sig_ids[: 4 + i % 8])
            strategy = rng.choice(STRATEGIES)
            outcome = rng.choices(OUTCOMES, weights=[5, 4, 1])[0]
            encounter = None
            if dep and outcome != "skipped" and (dep["id"], sid) not in decided:
                decided.add((dep["id"], sid))
                encounters[sid] += 1
                encounter = encounters[sid]
            rows.append(
                {
                    "signature_id": sid,
                    "strategy": strategy,
                    "step": "install",
                    "deployment_id": dep["id"] if dep else None,
                    "context": {},
                    "outcome": outcome,
                    "duration": round(rng.uniform(0.1, 20.0), 2),
                    "decided_by": "ranker",
                    "weight": rng.choice([1.0, 1.0, 0.5, 0.25]),
                    "origin": "local",
                    "record_key": f"k{i}",
                    # some failures straddle a week boundary (the first attempt decides the week)
                    "at": start + timedelta(minutes=rng.randrange(0, 3000)),
                    "encounter": encounter,
                }
            )
        conn.execute(insert(ATTEMPTS), rows)
    # strategies the KB defines: the report describes them by their row, unless it is a built-in
    kb.add_strategy("cleanup", "Clean up the disk.", "medium", commands=["true"])
    kb.add_strategy("free_port", "A local copy of a built-in.", "low", commands=["true"])


def _rows(kb: KnowledgeBase) -> list[dict[str, Any]]:
    a, s, d = ATTEMPTS.c, SIGNATURES.c, DEPLOYMENTS.c
    query = (
        select(
            a.id,
            a.signature_id,
            a.strategy,
            a.deployment_id,
            a.outcome,
            a.duration,
            a.weight,
            a.at,
            a.encounter,
            s.error_class,
            d.profile,
            d.host,
        )
        .select_from(ATTEMPTS.join(SIGNATURES).outerjoin(DEPLOYMENTS))
        .order_by(a.id)
    )
    with kb.reading() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _keep(row: dict[str, Any], f: Filters) -> bool:
    if f.since is not None and row["at"] < f.since:
        return False
    if f.profile is not None and row["profile"] != f.profile:
        return False
    return f.host is None or row["host"] == f.host


def _rate(rec: float, decided: float) -> float | None:
    return round(rec / decided, 4) if decided else None


def _numbered(rows: list[dict[str, Any]]) -> dict[int, int]:
    """Attempt id -> encounter, by the definition: a failure (a signature in a deployment) has
    its first not skipped attempt, and its encounter is 1 + the failures of the same signature
    whose first attempt came earlier. Over every row of the KB, whatever the filters."""
    firsts: dict[tuple[str, int], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["deployment_id"] is not None and r["outcome"] != "skipped":
            firsts.setdefault((r["deployment_id"], r["signature_id"]), r)
    seen: dict[int, int] = defaultdict(int)
    numbers = {}
    for r in sorted(firsts.values(), key=lambda r: r["id"]):
        seen[r["signature_id"]] += 1
        numbers[r["id"]] = seen[r["signature_id"]]
    return numbers


def _expected(rows: list[dict[str, Any]], f: Filters) -> dict[str, Any]:
    numbers = _numbered(rows)
    rows = [r for r in rows if _keep(r, f)]
    per_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    per_class: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_strategy[r["strategy"]].append(r)
        per_class[(r["error_class"], r["strategy"])].append(r)

    def tally(group: list[dict[str, Any]]) -> tuple[float, float]:
        rec = sum(r["weight"] for r in group if r["outcome"] == "recovered")
        decided = sum(r["weight"] for r in group if r["outcome"] != "skipped")
        return rec, decided

    strategies = []
    for name, group in per_strategy.items():
        rec, decided = tally(group)
        times = [r["duration"] for r in group if r["outcome"] == "recovered"]
        strategies.append(
            {
                "strategy": name,
                "risk": DESCRIBED.get(name, (None, ""))[0],
                "attempts": len(group),
                "success_rate": _rate(rec, decided) or 0.0,
                "mean_time_to_recovery": round(sum(times) / len(times), 3) if times else None,
                "description": DESCRIBED.get(name, (None, ""))[1],
            }
        )
    strategies.sort(key=lambda s: (-s["attempts"], s["strategy"]))

    best: dict[str, dict[str, Any]] = {}
    for (cls, name), group in sorted(per_class.items()):
        rate = _rate(*tally(group))
        if rate is None:
            continue
        current = best.get(cls)
        better = current is None or (rate, len(group)) > (
            current["success_rate"],
            current["attempts"],
        )
        if better:  # equal rate and attempts: the first name in order stays
            best[cls] = {
                "error_class": cls,
                "strategy": name,
                "attempts": len(group),
                "success_rate": rate,
            }

    # the failures whose first attempt passes the filters
    firsts = [r for r in rows if r["id"] in numbers]
    weeks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in firsts:
        monday = (r["at"] - timedelta(days=r["at"].weekday())).date().isoformat()
        weeks[monday].append(r)
    first_try = [
        {
            "week": week,
            "failures": len(group),
            "first_try_rate": _rate(
                sum(r["weight"] for r in group if r["outcome"] == "recovered"),
                sum(r["weight"] for r in group),
            ),
        }
        for week, group in sorted(weeks.items())
    ]
    return {
        "strategies": strategies,
        "best_strategy": [best[c] for c in sorted(best)],
        "first_try": first_try,
        "first_try_by_encounter": _by_encounter(rows, firsts, numbers),
    }


def _by_encounter(
    rows: list[dict[str, Any]], firsts: list[dict[str, Any]], numbers: dict[int, int]
) -> list[dict[str, Any]]:
    """Per class: strategies with a not skipped attempt (most attempts first, then by name), and
    per encounter bucket the failures and the weighted first-try rate; a failure's encounter is
    its number over the whole KB (the filters choose failures, they do not number them again)."""
    buckets: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in firsts:
        n = numbers[r["id"]]
        buckets[r["error_class"]]["1st" if n == 1 else "2nd" if n == 2 else "3rd_plus"].append(r)
    tried: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    decided: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["outcome"] != "skipped":
            decided[r["error_class"]].add(r["strategy"])
        tried[r["error_class"]][r["strategy"]] += 1
    out = []
    for cls in sorted(buckets):
        names = sorted(decided[cls], key=lambda s: (-tried[cls][s], s))
        row: dict[str, Any] = {"error_class": cls, "strategies_tried": ", ".join(names)}
        for key in ("1st", "2nd", "3rd_plus"):
            group = buckets[cls][key]
            row[f"{key}_failures"] = len(group)
            row[f"{key}_rate"] = _rate(
                sum(r["weight"] for r in group if r["outcome"] == "recovered"),
                sum(r["weight"] for r in group),
            )
        out.append(row)
    return out


def _same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Equal, but rounded floats may differ in their last digit (summation order)."""
    assert [list(r) for r in actual] == [list(r) for r in expected]
    for got, want in zip(actual, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, float) and isinstance(got[key], float):
                assert got[key] == pytest.approx(value, abs=1.01e-3), (key, got, want)
            else:
                assert got[key] == value, (key, got, want)


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(since=T0 + timedelta(days=6)),
        Filters(profile="prod"),
        Filters(host="web2", since=T0 + timedelta(days=3)),
    ],
    ids=["all", "since", "profile", "host-since"],
)
def test_report_sections_match_their_definitions(kb_url: str, filters: Filters) -> None:
    with KnowledgeBase.open(kb_url) as kb:
        _fill(kb)
        rows = _rows(kb)
        assert {r["id"]: r["encounter"] for r in rows if r["encounter"]} == _numbered(rows)
        report = build_report(kb, filters)
        expected = _expected(rows, filters)
        assert report.sections["first_try"], "the data set must give a learning curve"
        by_encounter = report.sections["first_try_by_encounter"]
        assert all(r["3rd_plus_failures"] for r in by_encounter), "every bucket must be filled"
        for name in ("strategies", "best_strategy", "first_try", "first_try_by_encounter"):
            _same(report.sections[name], expected[name])
        with kb.reading() as conn:
            table = strategy_table(conn, filters)
        assert [(s.strategy, s.attempts) for s in table] == [
            (s["strategy"], s["attempts"]) for s in expected["strategies"]
        ]
        assert [(s.strategy, s.attempts) for s in kb.strategy_stats()] == [
            (s["strategy"], s["attempts"]) for s in _expected(rows, Filters())["strategies"]
        ]


def test_first_try_by_encounter_in_every_format(tmp_path: Path) -> None:
    with KnowledgeBase.open(str(tmp_path / "kb.sqlite")) as kb:
        _fill(kb)
        report = build_report(kb)
        rows = report.sections["first_try_by_encounter"]
        assert rows
        columns = ["error_class", "strategies_tried", "1st_failures", "1st_rate", "2nd_failures"]
        columns += ["2nd_rate", "3rd_plus_failures", "3rd_plus_rate"]
        assert list(rows[0]) == columns
        table = render(report, "table")
        assert "First-try recovery rate by encounter of a signature" in table
        assert "1st rate" in table and "3rd plus failures" in table
        assert json.loads(render(report, "json"))["first_try_by_encounter"] == rows
        csv_block = render(report, "csv").split("# first_try_by_encounter\n")[1]
        assert csv_block.splitlines()[0] == ",".join(columns)
        assert 'id="section-first_try_by_encounter"' in build_html(kb)


def test_weeks_by_range_and_by_day_agree_on_times_without_microseconds(tmp_path: Path) -> None:
    """Rows written by other tools may store times without microseconds; the weekly curve puts
    an attempt at Monday midnight in that Monday's week either way."""
    from aideploy.knowledge.report import _first_try_by_day, _first_try_by_range

    with KnowledgeBase.open(str(tmp_path / "kb.sqlite")) as kb:
        _fill(kb)
        with kb.writing() as conn:
            conn.exec_driver_sql(
                "UPDATE recovery_attempts SET at = '2025-03-03 00:00:00' "
                "WHERE encounter IS NOT NULL AND id % 5 = 0"
            )
        with kb.reading() as conn:
            for f in (Filters(), Filters(since=datetime(2025, 3, 3)), Filters(since=T0)):
                by_range, by_day = _first_try_by_range(conn, f), _first_try_by_day(conn, f)
                assert by_range.keys() == by_day.keys() and "2025-03-03" in by_range
                for week, (n, weight, rec) in by_day.items():
                    assert by_range[week][0] == n, week
                    assert by_range[week][1:] == pytest.approx((weight, rec)), week
