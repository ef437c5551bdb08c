"""Ranking speed: one error against a history of 100,000 attempts over 20,000 signatures.

Run: ``python benchmarks/ranking_speed.py [--attempts 100000] [--signatures 20000]``

Signatures are variants of the corpus' real signatures (different file names and words), spread
over the error classes as the corpus is; outcomes are random over each class's strategies.
Reported: time to load the history into a Ranker, latency of detect+candidates for new errors
(p50/p95/max), and a full refit of the logistic outcome model.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence

from aideploy.core.recovery import Outcome
from aideploy.core.result import Result
from aideploy.knowledge.classes import strategies_for
from aideploy.knowledge.corpus import load_bundled, train_examples
from aideploy.knowledge.history import ListHistory, PastOutcome
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.signature import signature_of

WORDS = ("alpha", "beta", "gamma", "delta", "shop", "blog", "api", "web", "worker", "static")


def build_history(n_attempts: int, n_signatures: int, seed: int) -> tuple[ListHistory, list[str]]:
    rng = random.Random(seed)
    examples = [e for e in train_examples(load_bundled()) if not e.synthetic]
    bases = [(signature_of(e.text), e.error_class, e.text) for e in examples]
    signatures: list[tuple[str, str]] = []
    for i in range(n_signatures):
        sig, cls, _ = bases[i % len(bases)]
        variant = f"{sig}\nerror: {rng.choice(WORDS)} {rng.choice(WORDS)} in <path>/mod_{i}.py"
        signatures.append((variant, cls))
    outcomes = []
    for i in range(n_attempts):
        sig, cls = (
            signatures[rng.randrange(len(signatures))] if i >= n_signatures else (signatures[i])
        )
        strategy = rng.choice(strategies_for(cls))
        outcomes.append(
            PastOutcome(
                signature=sig,
                error_class=cls,
                strategy=strategy,
                outcome="recovered" if rng.random() < 0.6 else "failed",
                weight=1.0 if rng.random() < 0.8 else 0.5,
                context={"step": rng.choice(("install", "build", "web", "db"))},
            )
        )
    queries = [
        text + f"\nerror: {rng.choice(WORDS)} failed in /srv/app/mod_{rng.randrange(10**6)}.py"
        for _, _, text in rng.sample(bases, min(200, len(bases)))
    ]
    return ListHistory(outcomes), queries


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--signatures", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    history, queries = build_history(args.attempts, args.signatures, args.seed)
    start = time.perf_counter()
    ranker = Ranker(history, explore=0.0)
    load = time.perf_counter() - start
    for q in queries[:5]:  # warm-up
        ranker.candidates(ranker.failure_of(q, "web"))
    latencies, cpu = [], []
    for q in queries:
        result = Result(command="x", host="h", exit_code=1, stdout="", stderr=q, duration=0.0)
        t0, c0 = time.perf_counter(), time.thread_time()
        failure = ranker.detect("web", result)
        ranker.candidates(failure)
        latencies.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
    start, c0 = time.perf_counter(), time.process_time()
    ranker.refit()
    refit, refit_cpu = time.perf_counter() - start, time.process_time() - c0
    # a recorded outcome is visible to the next ranking without a refit
    f = ranker.failure_of(queries[0], "web")
    t0 = time.perf_counter()
    ranker.record(f, "manual_intervention", Outcome.RECOVERED, duration=1, decided_by="x")
    record_ms = (time.perf_counter() - t0) * 1000
    print(f"history: {args.attempts} attempts over {args.signatures} signatures (ListHistory)")
    print(f"load into Ranker (tallies + fuzzy index + first model fit): {load:.2f} s")
    print(
        f"detect+candidates over {len(latencies)} new errors: "
        f"p50 {statistics.median(latencies):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
        f"max {max(latencies):.2f} ms (CPU time: p50 {statistics.median(cpu):.2f} ms, "
        f"p95 {percentile(cpu, 0.95):.2f} ms)"
    )
    print(
        f"full model refit on {ranker.model.trained_on} outcomes: {refit:.2f} s "
        f"(CPU {refit_cpu:.2f} s)"
    )
    print(f"record one outcome: {record_ms:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
