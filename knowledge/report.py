"""``aideploy learn report``: what the knowledge base says, in a few aggregate queries.

Sections (each a list of rows):

- ``deployments``: per week, deployments started and the fraction that succeeded;
- ``signatures``: the most frequent error signatures;
- ``classes``: error classes by occurrences;
- ``strategies``: per strategy, attempts, weighted success rate, mean time to recovery;
- ``best_strategy``: per error class, the strategy with the best weighted success rate;
- ``first_try``: per week, the fraction of failures (a signature in a deployment) whose FIRST
  recovery attempt recovered: the learning curve.
- ``first_try_by_encounter``: per error class, the strategies tried and the first-try rate of its
  failures at their 1st, 2nd and 3rd-or-later encounter (the nth deployment that met that
  signature): whether a failure seen before is recovered at once.

Success rates are weighted (an imported outcome counts with its weight) and leave out skipped
attempts; mean time to recovery is the mean duration of the attempts that recovered.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    distinct,
    exists,
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
    "first_try_by_encounter": "First-try recovery rate by encounter of a signature",
}

#: encounter buckets of ``first_try_by_encounter``: key prefix, lowest encounter number
ENCOUNTERS: tuple[tuple[str, int], ...] = (("1st", 1), ("2nd", 2), ("3rd_plus", 3))

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


def deployment_filters(query: Any, filters: Filters) -> Any:
    """``query`` (over the deployments table) narrowed to the deployments ``filters`` select."""
    if filters.since is not None:
        query = query.where(_D.started_at >= filters.since)
    if filters.profile is not None:
        query = query.where(_D.profile == filters.profile)
    if filters.host is not None:
        query = query.where(_D.host == filters.host)
    return query


def _deployments(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    week = _week(conn, _D.started_at).label("week")
    ok = func.sum(case((_D.status == "succeeded", 1), else_=0))
    query = deployment_filters(
        select(week, func.count().label("n"), ok.label("ok")).group_by(week).order_by(week), f
    )
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


@dataclass
class _Tally:
    """Sums over a group of attempts (a strategy, or an error class and a strategy)."""

    attempts: int = 0
    weight: float = 0.0
    decided: float = 0.0
    recovered: float = 0.0
    recovery_time: float = 0.0
    recoveries: int = 0

    def add(self, row: tuple[Any, ...]) -> None:
        self.attempts += int(row[2])
        self.weight += float(row[3] or 0.0)
        self.decided += float(row[4] or 0.0)
        self.recovered += float(row[5] or 0.0)
        self.recovery_time += float(row[6] or 0.0)
        self.recoveries += int(row[7] or 0)

    @property
    def mean_time_to_recovery(self) -> float | None:
        return self.recovery_time / self.recoveries if self.recoveries else None


def _pair_rows(conn: Connection, f: Filters) -> list[tuple[Any, ...]]:
    """One grouped pass over the attempts, per (signature, strategy).

    Rows: signature id, strategy, attempts, weight, weight decided (not skipped), weight
    recovered, total recovery time, recoveries. On an unfiltered report the scan reads only the
    (signature_id, strategy, outcome, weight, duration) index. The per-strategy and the
    best-strategy-per-class tables are both sums of these rows.
    """
    recovered = _A.outcome == "recovered"
    query = _attempt_filters(
        select(
            _A.signature_id,
            _A.strategy,
            func.count(),
            func.sum(_A.weight),
            _decided_w(),
            _recovered_w(),
            func.sum(case((recovered, _A.duration), else_=None)),
            func.count(case((recovered, 1), else_=None)),
        ).select_from(ATTEMPTS),
        f,
    ).group_by(_A.signature_id, _A.strategy)
    return [tuple(r) for r in conn.execute(query)]


def _strategy_stats(pairs: list[tuple[Any, ...]]) -> list[StrategyStats]:
    from aideploy.knowledge.store import StrategyStats

    tallies: dict[str, _Tally] = {}
    for row in pairs:
        tally = tallies.get(row[1])
        if tally is None:
            tally = tallies[row[1]] = _Tally()
        tally.add(row)
    stats = [
        StrategyStats(
            strategy=name,
            attempts=t.attempts,
            weighted_attempts=t.weight,
            weighted_recovered=t.recovered,
            success_rate=_rate(t.recovered, t.decided) or 0.0,
            mean_time_to_recovery=_round(t.mean_time_to_recovery),
        )
        for name, t in tallies.items()
    ]
    stats.sort(key=lambda s: (-s.attempts, s.strategy))
    return stats


def strategy_table(conn: Connection, f: Filters | None = None) -> list[StrategyStats]:
    """Per strategy statistics, most attempted first."""
    return _strategy_stats(_pair_rows(conn, f or Filters()))


def _strategies(stats: list[StrategyStats]) -> list[dict[str, Any]]:
    return [
        {
            "strategy": s.strategy,
            "attempts": s.attempts,
            "success_rate": round(s.success_rate, 4),
            "mean_time_to_recovery": s.mean_time_to_recovery,
        }
        for s in stats
    ]


def _class_of(conn: Connection) -> dict[int, str]:
    """Every signature id's error class."""
    return {sid: cls for sid, cls in conn.execute(select(_S.id, _S.error_class))}


def _best(classes: dict[int, str], pairs: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    tallies: dict[tuple[str, str], _Tally] = {}
    for row in pairs:
        cls = classes.get(row[0])
        if cls is None:
            continue
        key = (cls, row[1])
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = _Tally()
        tally.add(row)
    best: dict[str, tuple[float, int, str]] = {}
    for (cls, strategy), t in tallies.items():
        rate = _rate(t.recovered, t.decided)
        n = t.attempts
        if rate is None or n < MIN_ATTEMPTS_FOR_BEST:
            continue
        choice = (rate, n, strategy)
        current = best.get(cls)
        # higher rate wins, then more attempts, then the name (so ties are stable)
        if current is None or (choice[0], choice[1], _neg(choice[2])) > (
            current[0],
            current[1],
            _neg(current[2]),
        ):
            best[cls] = choice
    return [
        {"error_class": cls, "strategy": s, "attempts": n, "success_rate": rate}
        for cls, (rate, n, s) in sorted(best.items())
    ]


def _neg(name: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in name)


def _day(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The day of ``column`` (SQLite stores times as ISO text, which starts with the date)."""
    if conn.dialect.name == "postgresql":
        return func.date_trunc("day", column)
    return func.substr(column, 1, 10)


def _day_text(conn: Connection, column: Any) -> ColumnElement[str]:
    """The day of ``column`` as YYYY-MM-DD text."""
    if conn.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def _first_attempt(f: Filters) -> Any:
    """The condition "no earlier (not skipped, filtered) attempt on the same signature in the
    same deployment": the attempt is a failure's first."""
    earlier = ATTEMPTS.alias("earlier")
    e = earlier.c
    before = select(e.id).where(
        e.deployment_id == _A.deployment_id,
        e.signature_id == _A.signature_id,
        e.id < _A.id,
        e.outcome != "skipped",
    )
    if f.since is not None:
        before = before.where(e.at >= f.since)
    return ~exists(before)


def _failures(conn: Connection, f: Filters) -> list[tuple[Any, ...]]:
    """Every failure's first (not skipped) attempt: (signature id, attempt id, day, weight,
    recovered weight).

    A failure is a signature in a deployment; its first attempt is the one with no earlier
    attempt on the same signature in the same deployment (among the filtered attempts). The
    anti-join is answered from the (deployment_id, signature_id, id, ...) index, once for both
    sections that need it.
    """
    query = _attempt_filters(
        select(
            _A.signature_id,
            _A.id,
            _day_text(conn, _A.at),
            _A.weight,
            case((_A.outcome == "recovered", _A.weight), else_=0.0),
        ).select_from(ATTEMPTS),
        f,
    ).where(_A.deployment_id.is_not(None), _A.outcome != "skipped", _first_attempt(f))
    result = conn.execute(query)
    try:  # a million rows: plain driver tuples (ids, numbers, dates need no result processing)
        return list(result.cursor.fetchall())
    finally:
        result.close()


def _monday(day: Any) -> str:
    """The Monday of a YYYY-MM-DD day, as YYYY-MM-DD."""
    start = date.fromisoformat(day)
    return (start - timedelta(days=start.weekday())).isoformat()


class _Failures:
    """The failures as columns: signature id, first attempt id, day, weight, recovered weight."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        import numpy as np

        table = np.array(
            rows,
            dtype=[("sid", "i8"), ("id", "i8"), ("day", "S10"), ("w", "f8"), ("rec", "f8")],
        )
        self.sid = table["sid"]
        self.id = table["id"]
        self.weight = np.nan_to_num(table["w"])
        self.rec = np.nan_to_num(table["rec"])
        names, self.day = np.unique(table["day"], return_inverse=True)
        self.day = self.day.reshape(-1)
        self.day_names = [name.decode() for name in names]


def _first_try(failures: _Failures) -> list[dict[str, Any]]:
    """Per week: the failures, and how many of them their first attempt recovered."""
    import numpy as np

    days = len(failures.day_names)
    count = np.bincount(failures.day, minlength=days)
    weight = np.bincount(failures.day, weights=failures.weight, minlength=days)
    rec = np.bincount(failures.day, weights=failures.rec, minlength=days)
    totals: dict[str, list[float]] = {}
    for i, day in enumerate(failures.day_names):
        total = totals.setdefault(_monday(day), [0, 0.0, 0.0])
        total[0] += int(count[i])
        total[1] += float(weight[i])
        total[2] += float(rec[i])
    return [
        {"week": w, "failures": int(n), "first_try_rate": _rate(r, wt)}
        for w, (n, wt, r) in sorted(totals.items())
    ]


def _by_encounter(
    classes: dict[int, str], failures: _Failures, pairs: list[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Per error class: strategies tried, and the first-try rate per encounter bucket.

    The failures are those of ``first_try``; a failure's encounter is its rank among the
    failures of the same signature, by first attempt id (the nth deployment that met the
    signature, within the filters). Rates are weighted like the other sections.
    """
    import numpy as np

    last = ENCOUNTERS[-1][1]
    order = np.lexsort((failures.id, failures.sid))
    sid = failures.sid[order]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else sid
    rank = np.arange(len(sid)) - np.repeat(starts, np.diff(np.r_[starts, len(sid)]))
    bucket = np.minimum(rank + 1, last)
    names = sorted(set(classes.values()))
    index = {name: i for i, name in enumerate(names)}
    lookup = np.full(int(sid.max()) + 1 if len(sid) else 1, -1, dtype=np.int64)
    for signature, cls in classes.items():
        if signature < len(lookup):
            lookup[signature] = index[cls]
    cls_of = lookup[sid]
    known = cls_of >= 0
    key = (cls_of * last + bucket - 1)[known]
    size = len(names) * last
    count = np.bincount(key, minlength=size)
    weight = np.bincount(key, weights=failures.weight[order][known], minlength=size)
    rec = np.bincount(key, weights=failures.rec[order][known], minlength=size)
    tried = _tried(classes, pairs)
    rows = []
    for i, cls in enumerate(names):
        if not count[i * last : (i + 1) * last].any():
            continue
        row: dict[str, Any] = {
            "error_class": cls,
            "strategies_tried": ", ".join(tried.get(cls, [])),
        }
        for label, n in ENCOUNTERS:
            k = i * last + n - 1
            row[f"{label}_failures"] = int(count[k])
            row[f"{label}_rate"] = _rate(float(rec[k]), float(weight[k])) if count[k] else None
        rows.append(row)
    return rows


def _tried(classes: dict[int, str], pairs: list[tuple[Any, ...]]) -> dict[str, list[str]]:
    """Per error class, the strategies with a decided (not skipped) attempt, most tried first."""
    attempts: dict[str, dict[str, int]] = {}
    for row in pairs:
        cls = classes.get(row[0])
        if cls is None or not row[4]:
            continue
        per = attempts.setdefault(cls, {})
        per[row[1]] = per.get(row[1], 0) + int(row[2])
    return {
        cls: [s for s, _ in sorted(per.items(), key=lambda kv: (-kv[1], kv[0]))]
        for cls, per in attempts.items()
    }


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
        pairs = _pair_rows(conn, f)
        report.sections["strategies"] = _strategies(_strategy_stats(pairs))
        classes = _class_of(conn)
        report.sections["best_strategy"] = _best(classes, pairs)
        failures = _Failures(_failures(conn, f))
        report.sections["first_try"] = _first_try(failures)
        report.sections["first_try_by_encounter"] = _by_encounter(classes, failures, pairs)
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
