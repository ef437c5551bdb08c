"""``aideploy learn report``: what the knowledge base says, in a few aggregate queries.

Sections (each a list of rows):

- ``deployments``: per week, deployments started and the fraction that succeeded;
- ``signatures``: the most frequent error signatures;
- ``classes``: error classes by occurrences;
- ``strategies``: per strategy, attempts, weighted success rate, mean time to recovery;
- ``best_strategy``: per error class, the strategy with the best weighted success rate;
- ``first_try``: per week, the fraction of failures (a signature in a deployment) whose FIRST
  recovery attempt recovered: the learning curve.

Success rates are weighted (an imported outcome counts with its weight) and leave out skipped
attempts; mean time to recovery is the mean duration of the attempts that recovered.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    distinct,
    func,
    select,
)
from tabulate import tabulate

from aideploy.engine.errors import UsageError
from aideploy.knowledge.models import ATTEMPTS, DEPLOYMENTS, SIGNATURES

if TYPE_CHECKING:
    from aideploy.knowledge.store import KnowledgeBase, StrategyStats

FORMATS = ("table", "json", "csv")
TOP_SIGNATURES = 15
SIGNATURE_WIDTH = 90
MIN_ATTEMPTS_FOR_BEST = 1

SECTIONS: dict[str, str] = {
    "deployments": "Deployments per week",
    "signatures": "Most frequent error signatures",
    "classes": "Error classes",
    "strategies": "Strategies",
    "best_strategy": "Best strategy per error class",
    "first_try": "First-try recovery rate per week (the learning curve)",
}

_A = ATTEMPTS.c
_S = SIGNATURES.c
_D = DEPLOYMENTS.c


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    profile: str | None = None
    host: str | None = None

    @property
    def by_deployment(self) -> bool:
        return self.profile is not None or self.host is not None


@dataclass
class Report:
    filters: Filters
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _week(conn: Connection, column: Any) -> ColumnElement[str]:
    """The Monday of ``column``'s week, as YYYY-MM-DD text."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("week", column), "YYYY-MM-DD")
    return func.date(column, "weekday 0", "-6 days")


def _recovered_w() -> ColumnElement[float]:
    return func.sum(case((_A.outcome == "recovered", _A.weight), else_=0.0))


def _decided_w() -> ColumnElement[float]:
    return func.sum(case((_A.outcome != "skipped", _A.weight), else_=0.0))


def _rate(recovered: float | None, decided: float | None) -> float | None:
    if not decided:
        return None
    return round(float(recovered or 0.0) / float(decided), 4)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _attempt_filters(query: Any, filters: Filters) -> Any:
    if filters.since is not None:
        query = query.where(_A.at >= filters.since)
    if filters.by_deployment:
        query = query.join(DEPLOYMENTS, _D.id == _A.deployment_id)
        if filters.profile is not None:
            query = query.where(_D.profile == filters.profile)
        if filters.host is not None:
            query = query.where(_D.host == filters.host)
    return query


def _deployments(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    week = _week(conn, _D.started_at).label("week")
    ok = func.sum(case((_D.status == "succeeded", 1), else_=0))
    query = select(week, func.count().label("n"), ok.label("ok")).group_by(week).order_by(week)
    if f.since is not None:
        query = query.where(_D.started_at >= f.since)
    if f.profile is not None:
        query = query.where(_D.profile == f.profile)
    if f.host is not None:
        query = query.where(_D.host == f.host)
    return [
        {
            "week": w,
            "deployments": int(n),
            "succeeded": int(ok or 0),
            "success_rate": _rate(ok, n),
        }
        for w, n, ok in conn.execute(query)
    ]


def _signatures(conn: Connection, f: Filters, limit: int) -> list[dict[str, Any]]:
    if f.by_deployment:
        n = func.count().label("n")
        query: Any = _attempt_filters(
            select(_S.text, _S.error_class, n).select_from(ATTEMPTS.join(SIGNATURES)),
            f,
        ).group_by(_S.id, _S.text, _S.error_class)
        query = query.order_by(n.desc(), _S.text).limit(limit)
    else:
        query = select(_S.text, _S.error_class, _S.count).order_by(_S.count.desc(), _S.text)
        if f.since is not None:
            query = query.where(_S.last_seen >= f.since)
        query = query.limit(limit)
    return [
        {"signature": text, "error_class": cls, "seen": int(count)}
        for text, cls, count in conn.execute(query)
    ]


def _classes(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    if f.by_deployment:
        seen = func.count().label("seen")
        query = _attempt_filters(
            select(_S.error_class, func.count(distinct(_S.id)), seen).select_from(
                ATTEMPTS.join(SIGNATURES)
            ),
            f,
        ).group_by(_S.error_class)
    else:
        seen = func.sum(_S.count).label("seen")
        query = select(_S.error_class, func.count(), seen).group_by(_S.error_class)
        if f.since is not None:
            query = query.where(_S.last_seen >= f.since)
    query = query.order_by(seen.desc(), _S.error_class)
    return [
        {"error_class": cls, "signatures": int(nsig), "seen": int(n or 0)}
        for cls, nsig, n in conn.execute(query)
    ]


def _strategy_rows(conn: Connection, f: Filters) -> list[tuple[Any, ...]]:
    mttr = func.avg(case((_A.outcome == "recovered", _A.duration), else_=None))
    query = _attempt_filters(
        select(
            _A.strategy,
            func.count(),
            func.sum(_A.weight),
            _decided_w(),
            _recovered_w(),
            mttr,
        ).select_from(ATTEMPTS),
        f,
    ).group_by(_A.strategy)
    return [tuple(r) for r in conn.execute(query)]


def strategy_table(conn: Connection, f: Filters | None = None) -> list[StrategyStats]:
    """Per strategy statistics, most attempted first."""
    from aideploy.knowledge.store import StrategyStats

    stats = [
        StrategyStats(
            strategy=name,
            attempts=int(n),
            weighted_attempts=float(w or 0.0),
            weighted_recovered=float(rec or 0.0),
            success_rate=_rate(rec, decided) or 0.0,
            mean_time_to_recovery=_round(mttr),
        )
        for name, n, w, decided, rec, mttr in _strategy_rows(conn, f or Filters())
    ]
    stats.sort(key=lambda s: (-s.attempts, s.strategy))
    return stats


def _strategies(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    return [
        {
            "strategy": s.strategy,
            "attempts": s.attempts,
            "success_rate": round(s.success_rate, 4),
            "mean_time_to_recovery": s.mean_time_to_recovery,
        }
        for s in strategy_table(conn, f)
    ]


def _best(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    query = _attempt_filters(
        select(_S.error_class, _A.strategy, func.count(), _decided_w(), _recovered_w()).select_from(
            ATTEMPTS.join(SIGNATURES)
        ),
        f,
    ).group_by(_S.error_class, _A.strategy)
    best: dict[str, tuple[float, int, str]] = {}
    for cls, strategy, n, decided, rec in conn.execute(query):
        rate = _rate(rec, decided)
        if rate is None or n < MIN_ATTEMPTS_FOR_BEST:
            continue
        key = (rate, int(n), strategy)
        current = best.get(cls)
        # higher rate wins, then more attempts, then the name (so ties are stable)
        if current is None or (key[0], key[1], _neg(key[2])) > (
            current[0],
            current[1],
            _neg(current[2]),
        ):
            best[cls] = key
    return [
        {"error_class": cls, "strategy": s, "attempts": n, "success_rate": rate}
        for cls, (rate, n, s) in sorted(best.items())
    ]


def _neg(name: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in name)


def _first_try(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    firsts = (
        _attempt_filters(
            select(func.min(_A.id).label("first_id")).select_from(ATTEMPTS),
            f,
        )
        .where(_A.deployment_id.is_not(None), _A.outcome != "skipped")
        .group_by(_A.deployment_id, _A.signature_id)
        .subquery()
    )
    week = _week(conn, _A.at).label("week")
    query = (
        select(week, func.count(), func.sum(_A.weight), _recovered_w())
        .select_from(ATTEMPTS.join(firsts, and_(_A.id == firsts.c.first_id)))
        .group_by(week)
        .order_by(week)
    )
    return [
        {"week": w, "failures": int(n), "first_try_rate": _rate(rec, weight)}
        for w, n, weight, rec in conn.execute(query)
    ]


def build_report(
    kb: KnowledgeBase, filters: Filters | None = None, *, top: int = TOP_SIGNATURES
) -> Report:
    """Run every report query in one read transaction."""
    f = filters or Filters()
    report = Report(filters=f)
    with kb.reading() as conn:
        report.sections["deployments"] = _deployments(conn, f)
        report.sections["signatures"] = _signatures(conn, f, top)
        report.sections["classes"] = _classes(conn, f)
        report.sections["strategies"] = _strategies(conn, f)
        report.sections["best_strategy"] = _best(conn, f)
        report.sections["first_try"] = _first_try(conn, f)
    return report


# --- rendering -----------------------------------------------------------------------------


def _cell(value: Any, width: int | None = None) -> Any:
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1.0 else f"{value:.2f}"
    if value is None:
        return "-"
    if isinstance(value, str) and width is not None and len(value) > width:
        return value[: width - 1] + "…"
    return value


def _table_cell(key: str, value: Any) -> Any:
    if key == "mean_time_to_recovery":
        return "-" if value is None else f"{value:.1f}s"
    if key.endswith("rate"):
        return "-" if value is None else f"{value:.1%}"
    return _cell(value, SIGNATURE_WIDTH if key == "signature" else None)


def render(report: Report, fmt: str = "table") -> str:
    """The report as text tables, JSON, or CSV blocks (one per section, headed by its name)."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}")
    if fmt == "json":
        f = report.filters
        return json.dumps(
            {
                "filters": {
                    "since": f.since.isoformat() if f.since else None,
                    "profile": f.profile,
                    "host": f.host,
                },
                **report.sections,
            },
            indent=2,
            sort_keys=False,
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for name, rows in report.sections.items():
            writer.writerow([f"# {name}"])
            if rows:
                writer.writerow(list(rows[0]))
                writer.writerows([list(r.values()) for r in rows])
            writer.writerow([])
        return out.getvalue()
    parts: list[str] = []
    for name, title in SECTIONS.items():
        rows = report.sections.get(name, [])
        parts.append(title)
        parts.append("=" * len(title))
        if not rows:
            parts.append("(nothing recorded yet)\n")
            continue
        headers: Sequence[str] = list(rows[0])
        body = [[_table_cell(k, r[k]) for k in headers] for r in rows]
        parts.append(tabulate(body, headers=[h.replace("_", " ") for h in headers]))
        parts.append("")
    return "\n".join(parts)
