"""``aideploy learn report``: what the knowledge base says, in a few aggregate queries.

Sections (each a list of rows):

- ``deployments``: per week, deployments started and the fraction that succeeded;
- ``signatures``: the most frequent error signatures;
- ``classes``: error classes by occurrences;
- ``strategies``: per strategy, its risk, attempts, weighted success rate, mean time to recovery
  and what it does (risk and description from the strategy catalogue, or for a strategy the KB
  defines, from its row);
- ``best_strategy``: per error class, the strategy with the best weighted success rate;
- ``first_try``: per week, the fraction of failures (a signature in a deployment) whose FIRST
  (not skipped) recovery attempt recovered: the learning curve.
- ``first_try_by_encounter``: per error class, the strategies tried and the first-try rate of its
  failures at their 1st, 2nd and 3rd-or-later encounter (the nth deployment that met that
  signature): whether a failure seen before is recovered at once.

Both read the encounter number stored on each failure's first attempt when it was recorded
(``recovery_attempts.encounter``): a failure counts when its first attempt passes the filters, and
keeps its number in the whole KB.

Success rates are weighted (an imported outcome counts with its weight) and leave out skipped
attempts; mean time to recovery is the mean duration of the attempts that recovered.

Over 400 lines because each of the report's seven sections is a query and its shaping, kept
together so that a section reads top to bottom in one place.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    case,
    distinct,
    func,
    select,
    type_coerce,
)
from tabulate import tabulate

from aideploy.core.errors import UsageError
from aideploy.knowledge.classes import CATALOGUE
from aideploy.knowledge.models import ATTEMPTS, DEPLOYMENTS, SIGNATURES, STRATEGIES


class ReadableStore(Protocol):
    """What a report needs of a knowledge base: a read-only connection."""

    def reading(self) -> AbstractContextManager[Connection]: ...


@dataclass(frozen=True)
class StrategyStats:
    """One strategy's record: attempts, weighted success rate, mean time to recovery."""

    strategy: str
    attempts: int
    weighted_attempts: float
    weighted_recovered: float
    success_rate: float
    mean_time_to_recovery: float | None


FORMATS = ("table", "json", "csv")
TOP_SIGNATURES = 15
SIGNATURE_WIDTH = 90
DESCRIPTION_WIDTH = 60
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
    decided = _A.outcome.in_(("recovered", "failed"))  # not skipped, pending or unknown
    return func.sum(case((decided, _A.weight), else_=0.0))


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
        # a list of deployment ids, not a join: SQLite then reads the chosen deployments'
        # attempts through the deployment index instead of checking every attempt's deployment
        chosen = select(_D.id)
        if filters.profile is not None:
            chosen = chosen.where(_D.profile == filters.profile)
        if filters.host is not None:
            chosen = chosen.where(_D.host == filters.host)
        query = query.where(_A.deployment_id.in_(chosen))
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
    recovered, total recovery time, recoveries, and of the failures at their 3rd or later
    encounter whose first attempt is in the group: count, weight, weight recovered. On an
    unfiltered report the scan reads only the (signature_id, strategy, outcome, weight,
    duration, encounter) index. The per-strategy, best-strategy-per-class and by-encounter
    tables are sums of these rows.
    """
    recovered = _A.outcome == "recovered"
    later = _A.encounter >= ENCOUNTERS[-1][1]
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
            func.count(case((later, 1), else_=None)),
            func.sum(case((later, _A.weight), else_=None)),
            func.sum(case((later & recovered, _A.weight), else_=None)),
        ).select_from(ATTEMPTS),
        f,
    ).group_by(_A.signature_id, _A.strategy)
    return [tuple(r) for r in conn.execute(query)]


def _strategy_stats(pairs: list[tuple[Any, ...]]) -> list[StrategyStats]:
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


def _described(conn: Connection) -> dict[str, tuple[str, str]]:
    """Risk and description by strategy: the catalogue's for a built-in, else the KB's row."""
    rows = conn.execute(select(STRATEGIES.c.name, STRATEGIES.c.risk, STRATEGIES.c.description))
    known = {name: (risk, description or "") for name, risk, description in rows}
    known.update((name, (s.risk.value, s.description)) for name, s in CATALOGUE.items())
    return known


def _strategies(
    stats: list[StrategyStats], described: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    return [
        {
            "strategy": s.strategy,
            "risk": described.get(s.strategy, (None, ""))[0],
            "attempts": s.attempts,
            "success_rate": round(s.success_rate, 4),
            "mean_time_to_recovery": s.mean_time_to_recovery,
            "description": described.get(s.strategy, (None, ""))[1],
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


def _day_text(conn: Connection, column: Any) -> ColumnElement[str]:
    """The day of ``column`` as YYYY-MM-DD text (SQLite keeps times as ISO text)."""
    if conn.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def _monday(day: str) -> str:
    """The Monday of a YYYY-MM-DD day, as YYYY-MM-DD."""
    start = date.fromisoformat(day)
    return (start - timedelta(days=start.weekday())).isoformat()


def _first_try(conn: Connection, f: Filters) -> list[dict[str, Any]]:
    """Per week: the failures whose first attempt is in that week, and how many of them (by
    weight) it recovered. A failure's first attempt is the one that carries its encounter.
    """
    totals = _first_try_by_range if _by_range(conn, f) else _first_try_by_day
    return [
        {"week": w, "failures": int(n), "first_try_rate": _rate(r, wt)}
        for w, (n, wt, r) in sorted(totals(conn, f).items())
    ]


def _by_range(conn: Connection, f: Filters) -> bool:
    """Whether ``first_try`` takes the weeks one by one (SQLite, no deployment filter)."""
    return conn.dialect.name == "sqlite" and not f.by_deployment


def _failure_totals(f: Filters, *columns: Any) -> Any:
    """``columns`` and the failures' count, weight and recovered weight, filtered."""
    query = select(*columns, func.count(), func.sum(_A.weight), _recovered_w())
    return _attempt_filters(query.select_from(ATTEMPTS), f).where(_A.encounter.is_not(None))


def _first_try_by_day(conn: Connection, f: Filters) -> dict[str, tuple[Any, ...]]:
    """Week -> failures, weight, recovered weight: grouped by day (a cheaper key than the week on
    SQLite), the days summed into weeks here."""
    day = _day_text(conn, _A.at).label("day")
    totals: dict[str, list[float]] = {}
    for d, n, weight, rec in conn.execute(_failure_totals(f, day).group_by(day)):
        total = totals.setdefault(_monday(d), [0, 0.0, 0.0])
        total[0] += int(n)
        total[1] += float(weight or 0.0)
        total[2] += float(rec or 0.0)
    return {week: tuple(total) for week, total in totals.items()}


def _first_try_by_range(conn: Connection, f: Filters) -> dict[str, tuple[Any, ...]]:
    """``_first_try_by_day`` as one aggregate per week over a range of the attempts' time index.

    SQLite answers a GROUP BY by sorting every failure first, which costs more than the scan;
    each week here reads its range of the index in order. SQLite keeps a time as ISO text, with
    or without microseconds (rows written by other tools): the weeks' bounds are compared as text
    with bare dates, so every time of a day falls on or after that day's date; ``since`` is the
    text the DATETIME type makes of it, as in the other sections. It is folded into the first
    week's bound: given as a second lower bound, SQLite would scan every week from ``since``.
    """
    at = type_coerce(_A.at, String)
    lower: str | None = None
    if f.since is not None:
        stored = _A.at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        lower = stored(f.since) if stored is not None else f.since.isoformat(" ")
    earliest = select(func.min(_A.at)).where(_A.encounter.is_not(None))
    totals: dict[str, tuple[Any, ...]] = {}
    while True:
        start = conn.scalar(earliest if lower is None else earliest.where(at >= lower))
        if start is None:
            return totals
        monday = start.date() - timedelta(days=start.weekday())
        low, high = monday.isoformat(), (monday + timedelta(days=7)).isoformat()
        week = _failure_totals(Filters()).where(at >= max(low, lower or low), at < high)
        totals[low] = tuple(conn.execute(week).one())
        lower = high


def _early_encounters(conn: Connection, f: Filters) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The failures at their 1st and 2nd encounter, per (error class, encounter): count, weight,
    recovered weight."""
    last = ENCOUNTERS[-1][1]
    query = _attempt_filters(
        select(
            _S.error_class, _A.encounter, func.count(), func.sum(_A.weight), _recovered_w()
        ).select_from(ATTEMPTS.join(SIGNATURES)),
        f,
    ).where(_A.encounter < last)
    query = query.group_by(_S.error_class, _A.encounter)
    return {(cls, int(n)): tuple(rest) for cls, n, *rest in conn.execute(query)}


def _by_encounter(
    conn: Connection, f: Filters, classes: dict[int, str], pairs: list[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Per error class: strategies tried, and the first-try rate per encounter bucket.

    The failures are those of ``first_try``; a failure's encounter is the number stored on its
    first attempt when it was recorded (the nth deployment that met the signature, in the whole
    KB: the filters choose failures, they do not number them again). The 1st and 2nd encounters
    are one small grouped query; the 3rd-or-later ones are summed in the grouped pass of
    :func:`_pair_rows`. Rates are weighted like the other sections.
    """
    last = ENCOUNTERS[-1][1]
    tallies = {
        key: [int(n), float(w or 0.0), float(r or 0.0)]
        for key, (n, w, r) in _early_encounters(conn, f).items()
    }
    for pair in pairs:
        cls = classes.get(pair[0])
        if cls is None or not pair[8]:
            continue
        tally = tallies.setdefault((cls, last), [0, 0.0, 0.0])
        tally[0] += int(pair[8])
        tally[1] += float(pair[9] or 0.0)
        tally[2] += float(pair[10] or 0.0)
    tried = _tried(classes, pairs)
    rows = []
    for cls in sorted({cls for cls, _ in tallies}):
        row: dict[str, Any] = {
            "error_class": cls,
            "strategies_tried": ", ".join(tried.get(cls, [])),
        }
        for label, n in ENCOUNTERS:
            count, weight, rec = tallies.get((cls, n), (0, 0.0, 0.0))
            row[f"{label}_failures"] = count
            row[f"{label}_rate"] = _rate(rec, weight) if count else None
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
    kb: ReadableStore, filters: Filters | None = None, *, top: int = TOP_SIGNATURES
) -> Report:
    """Run every report query in one read transaction."""
    f = filters or Filters()
    report = Report(filters=f)
    with kb.reading() as conn:
        report.sections["deployments"] = _deployments(conn, f)
        report.sections["signatures"] = _signatures(conn, f, top)
        report.sections["classes"] = _classes(conn, f)
        pairs = _pair_rows(conn, f)
        report.sections["strategies"] = _strategies(_strategy_stats(pairs), _described(conn))
        classes = _class_of(conn)
        report.sections["best_strategy"] = _best(classes, pairs)
        report.sections["first_try"] = _first_try(conn, f)
        report.sections["first_try_by_encounter"] = _by_encounter(conn, f, classes, pairs)
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
    width = {"signature": SIGNATURE_WIDTH, "description": DESCRIPTION_WIDTH}.get(key)
    return _cell(value, width)


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
