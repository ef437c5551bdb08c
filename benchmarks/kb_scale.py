"""Knowledge base at scale: open cost, report time, export/import throughput, concurrent writers.

    .venv/bin/python benchmarks/kb_scale.py                  # 1,000,000 attempts, 20,000 signatures
    .venv/bin/python benchmarks/kb_scale.py --attempts 100000
    .venv/bin/python benchmarks/kb_scale.py --open-only      # just the cost of opening a KB

Builds a SQLite KB through the migrations, bulk-loads it (executemany on the core tables), then
times opening it (the check every CLI call makes), ``learn report`` (the whole base, one host of
20, one profile of two), an export of the whole base and an import of that file into an empty
base, and N writer processes recording through the normal ``record_attempt`` API into one file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from aideploy.knowledge.exchange import export_kb, import_kb
from aideploy.knowledge.report import Filters, build_report, render
from aideploy.knowledge.store import KnowledgeBase, signature_hash

CLASSES = [
    "apt_lock",
    "port_in_use",
    "disk_full",
    "dns_failure",
    "package_not_found",
    "permission_denied",
    "database_connection",
    "nginx_config",
]
STRATEGIES = [
    "wait_for_apt_lock",
    "free_port",
    "cleanup_disk",
    "dns_fallback_resolver",
    "apt_update",
    "fix_ownership",
    "start_service",
    "restore_nginx_config",
    "retry_with_backoff",
]
CONTEXTS = ['{"os": "ubuntu-24.04"}', '{"os": "debian-12"}', '{"os": "ubuntu-22.04"}']
T0 = datetime(2025, 1, 6)


def populate(path: Path, attempts: int, signatures: int, chunk: int = 100_000) -> None:
    """Bulk-load ``attempts`` attempts over ``signatures`` signatures (50 attempts/deployment)."""
    rng = random.Random(7)
    deployments = max(1, attempts // 50)
    span = timedelta(days=365)
    with KnowledgeBase.open(path) as kb, kb.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO deployments (id, profile, host, plan, status, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    f"dep-{d:07d}",
                    "prod" if d % 3 else "staging",
                    f"web{d % 20}",
                    "default",
                    "succeeded" if rng.random() < 0.8 else "failed",
                    (T0 + span * d / deployments).isoformat(" "),
                )
                for d in range(deployments)
            ],
        )
        sig_rows = []
        for s in range(signatures):
            text = f"E: {CLASSES[s % len(CLASSES)]} failure <n> variant {s}"
            sig_rows.append(
                (
                    text,
                    signature_hash(text),
                    CLASSES[s % len(CLASSES)],
                    T0.isoformat(" "),
                    (T0 + span).isoformat(" "),
                    rng.randint(1, 100),
                )
            )
        conn.exec_driver_sql(
            "INSERT INTO error_signatures (text, hash, error_class, first_seen, last_seen, "
            "count) VALUES (?, ?, ?, ?, ?, ?)",
            sig_rows,
        )
        # encounters as record_attempt numbers them: a deployment's first attempt on a signature
        # (none is skipped here) gets the signature's next number
        encounters = [0] * (signatures + 1)
        met: set[int] = set()
        for start in range(0, attempts, chunk):
            rows = []
            for i in range(start, min(attempts, start + chunk)):
                d = i // 50
                if i % 50 == 0:
                    met.clear()
                sid = 1 + rng.randrange(signatures)
                encounter = None
                if sid not in met:
                    met.add(sid)
                    encounters[sid] += 1
                    encounter = encounters[sid]
                rows.append(
                    (
                        sid,
                        STRATEGIES[(sid + i % 3) % len(STRATEGIES)],
                        "install",
                        f"dep-{d:07d}",
                        CONTEXTS[d % len(CONTEXTS)],
                        "recovered" if rng.random() < 0.6 else "failed",
                        round(rng.uniform(0.5, 30.0), 2),
                        "ranker",
                        1.0,
                        "local",
                        f"{i:032x}",
                        (T0 + span * d / deployments + timedelta(seconds=i % 50)).isoformat(" "),
                        encounter,
                    )
                )
            conn.exec_driver_sql(
                "INSERT INTO recovery_attempts (signature_id, strategy, step, deployment_id, "
                "context, outcome, duration, decided_by, weight, origin, record_key, at, "
                "encounter) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        conn.exec_driver_sql(
            "UPDATE error_signatures SET encounters = ? WHERE id = ?",
            [(n, sid) for sid, n in enumerate(encounters) if n],
        )


def _writer(path: str, n: int, worker: int) -> None:
    kb = KnowledgeBase.open(path)
    for i in range(n):
        kb.record_attempt(
            f"writer-{worker}",
            f"E: failure kind {i % 100}",
            "unknown",
            STRATEGIES[i % len(STRATEGIES)],
            "install",
            "recovered" if i % 3 else "failed",
            0.1,
            "ranker",
            {"os": "ubuntu-24.04"},
        )
    kb.close()


def writers(path: Path, processes: int, per_writer: int) -> tuple[float, int]:
    with KnowledgeBase.open(path) as kb:
        for w in range(processes):
            kb.start_deployment(f"writer-{w}", "bench", "localhost", "default")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), per_writer, w)) for w in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"a writer failed: exit codes {[p.exitcode for p in procs]}")
    with KnowledgeBase.open(path) as kb:
        stored = kb.counts()["attempts"]
    return elapsed, stored


_FIRST_OPEN = """
import sys, time
from aideploy.knowledge.store import KnowledgeBase
started = time.perf_counter()
KnowledgeBase.open(sys.argv[1]).close()
print(time.perf_counter() - started)
"""


def open_cost(path: Path, fresh: int = 5, repeats: int = 50) -> tuple[float, float]:
    """Opening a KB already at the newest schema, in seconds (medians): the first open in a new
    process (what each CLI call pays, after its imports) and each further open in one process."""
    KnowledgeBase.open(path).close()  # created and migrated before anything is timed
    firsts = [
        float(
            subprocess.run(
                [sys.executable, "-c", _FIRST_OPEN, str(path)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(fresh)
    ]
    again = []
    for _ in range(repeats):
        started = time.perf_counter()
        KnowledgeBase.open(path).close()
        again.append(time.perf_counter() - started)
    return statistics.median(firsts), statistics.median(again)


def print_open_cost(path: Path) -> None:
    first, again = open_cost(path)
    print(f"open (at head): {first * 1000:.1f} ms first in a process, then {again * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--signatures", type=int, default=None, help="default: attempts / 50")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--per-writer", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases")
    parser.add_argument("--open-only", action="store_true", help="only time opening a KB")
    args = parser.parse_args()
    signatures = args.signatures or max(1, min(20_000, args.attempts // 50))

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="kb-scale-") as tmp:
        base = Path(tmp)
        if args.open_only:
            print_open_cost(base / "small.db")
            return
        source = base / "source.db"
        started = time.perf_counter()
        populate(source, args.attempts, signatures)
        print(
            f"populate: {args.attempts:,} attempts / {signatures:,} signatures "
            f"in {time.perf_counter() - started:.1f} s"
        )

        print_open_cost(source)

        with KnowledgeBase.open(source) as kb:
            started = time.perf_counter()
            text = render(build_report(kb))
            report_s = time.perf_counter() - started
            print(f"learn report: {report_s:.2f} s ({len(text.splitlines())} lines)")
            for label, filters in (
                ("--host web3", Filters(host="web3")),
                ("--profile staging", Filters(profile="staging")),
            ):
                started = time.perf_counter()
                render(build_report(kb, filters))
                print(f"learn report {label}: {time.perf_counter() - started:.2f} s")

            export = base / "kb.jsonl"
            started = time.perf_counter()
            records = export_kb(kb, export)
            export_s = time.perf_counter() - started
            print(
                f"export: {records:,} records in {export_s:.1f} s = "
                f"{records / export_s:,.0f} records/s ({export.stat().st_size / 1e6:.0f} MB)"
            )

        with KnowledgeBase.open(base / "imported.db") as kb:
            started = time.perf_counter()
            cpu = time.process_time()
            summary = import_kb(kb, export)
            import_s = time.perf_counter() - started
            cpu = time.process_time() - cpu
            # CPU seconds as well: on a shared machine they move less with the load than wall time
            print(
                f"import: {summary.records:,} records in {import_s:.1f} s = "
                f"{summary.records / import_s:,.0f} records/s (CPU {cpu:.1f} s, load "
                f"{os.getloadavg()[0]:.1f})"
            )
            assert kb.counts()["attempts"] == args.attempts

        total = args.writers * args.per_writer
        elapsed, stored = writers(base / "shared.db", args.writers, args.per_writer)
        lost = total - stored
        print(
            f"writers: {args.writers} processes x {args.per_writer:,} record_attempt calls "
            f"in {elapsed:.1f} s = {total / elapsed:,.0f} attempts/s, lost {lost}, "
            "lock errors 0"
        )
        if lost:
            raise SystemExit(f"{lost} attempts lost")


if __name__ == "__main__":
    main()
