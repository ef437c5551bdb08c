"""Classification on held-out real texts: rules only, classifier only, and both.

    .venv/bin/python benchmarks/classify_eval.py            # accuracy table (markdown)
    .venv/bin/python benchmarks/classify_eval.py --speed    # plus training and classify timings

The split is :func:`aideploy.knowledge.heldout.heldout_split`: the corpus' test texts minus
those that are near-copies of a training text. The classifier is trained on the train side only.
Top-1 per class is the share of that class's held-out texts whose best class is right.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence

from aideploy.knowledge.classes import ERROR_CLASSES, UNKNOWN
from aideploy.knowledge.corpus import Example
from aideploy.knowledge.heldout import NEAR_DUPLICATE_SCORE, heldout_split
from aideploy.knowledge.ranker.detect import Detector, combine, train_classifier
from aideploy.knowledge.rules import RuleSet

Predict = Callable[[str], str]


def top1(scores: dict[str, float]) -> str:
    return max(scores.items(), key=lambda kv: kv[1])[0] if scores else UNKNOWN


def predictors(train: Sequence[Example]) -> dict[str, Predict]:
    rules = RuleSet()
    classifier = train_classifier(train)

    def rules_only(text: str) -> str:
        return top1(rules.class_scores(rules.match(text)))

    def classifier_only(text: str) -> str:
        return top1(classifier.proba(text))

    def both(text: str) -> str:
        return combine(rules.class_scores(rules.match(text)), classifier.proba(text))[0][0]

    return {"rules": rules_only, "classifier": classifier_only, "both": both}


def evaluate(test: Sequence[Example], predict: dict[str, Predict]) -> dict[str, Counter[str]]:
    """Per mode, the count of right answers per class."""
    right: dict[str, Counter[str]] = {mode: Counter() for mode in predict}
    for ex in test:
        for mode, fn in predict.items():
            if fn(ex.text) == ex.error_class:
                right[mode][ex.error_class] += 1
    return right


def table(test: Sequence[Example], right: dict[str, Counter[str]]) -> str:
    totals = Counter(e.error_class for e in test)
    modes = list(right)
    lines = [
        "| class | n | " + " | ".join(modes) + " |",
        "|---|---:|" + "---:|" * len(modes),
    ]
    for cls in ERROR_CLASSES:
        n = totals[cls]
        if not n:
            continue
        cells = " | ".join(f"{right[m][cls] / n:.2f}" for m in modes)
        lines.append(f"| {cls} | {n} | {cells} |")
    n_all = sum(totals.values())
    overall = " | ".join(f"**{sum(right[m].values()) / n_all:.3f}**" for m in modes)
    lines.append(f"| **all** | {n_all} | {overall} |")
    return "\n".join(lines)


_COLD_TRAIN = """
import time
t, c = time.perf_counter(), time.process_time()
from aideploy.knowledge.ranker.detect import bundled_classifier
bundled_classifier()
print(time.perf_counter() - t, time.process_time() - c)
"""


def cold_training_seconds() -> tuple[float, float]:
    """A first run: a fresh interpreter, an empty cache directory, the bundled classifier
    (imports, training and writing the cache): wall-clock and CPU seconds."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "AIDEPLOY_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", _COLD_TRAIN], env=env, check=True, capture_output=True, text=True
        )
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def classify_ms(texts: Sequence[str], rounds: int = 3) -> dict[str, tuple[float, float]]:
    """Median and p95 milliseconds (wall-clock and CPU) to analyse one text: rules +
    classifier, no analysis cache."""
    from aideploy.knowledge.ranker.detect import bundled_classifier

    detector = Detector(RuleSet(), bundled_classifier())
    detector.analyze_many(list(texts[:5]))  # warm-up
    wall, cpu = [], []
    for _ in range(rounds):
        for text in texts:
            start, start_cpu = time.perf_counter(), time.thread_time()
            detector.analyze_many([text])
            cpu.append((time.thread_time() - start_cpu) * 1000)
            wall.append((time.perf_counter() - start) * 1000)
    return {
        "wall": (statistics.median(wall), p95(wall)),
        "cpu": (statistics.median(cpu), p95(cpu)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="also time training and classify")
    args = parser.parse_args(argv)
    split = heldout_split()
    print(
        f"held-out: {len(split.test)} real test texts kept, {len(split.removed)} removed as "
        f"near-copies of training texts (rapidfuzz ratio >= {NEAR_DUPLICATE_SCORE:g}); "
        f"trained on {len(split.train)}\n"
    )
    right = evaluate(split.test, predictors(split.train))
    print(table(split.test, right))
    if args.speed:
        runs = [cold_training_seconds() for _ in range(3)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"\nfirst-run training (fresh cache): median {wall:.2f} s wall, {cpu:.2f} s CPU")
        texts = [e.text for e in (*split.train, *split.test, *split.removed)]
        for kind, (median, high) in classify_ms(texts).items():
            print(f"classify one text ({kind}): median {median:.2f} ms, p95 {high:.2f} ms")
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
