"""Ablation: what each part of the ranker earns, on held-out real texts and in the fair world.

Run: ``python benchmarks/learning_ablation.py [--failures 1000] [--seeds 1 2 3 4 5]``

1. **Held-out texts.** The corpus' ``test`` split, after removing every text that is a near
   duplicate of a ``train`` text (rapidfuzz ratio of the masked signatures at least
   ``NEAR_DUPLICATE``, or the same signature): how many were removed is printed. Error-class
   top-1/top-3 of the rules alone, the text classifier alone (trained on the train split), both
   together as detection combines them, and a fuzzy nearest-train-text vote for reference.
2. **Fuzzy cutoff calibration.** On variants of the train texts (``fair_world.variant``): the
   share of variants whose signature stays within the cutoff of the original, against the share
   of other train texts of the same class that do.
3. **Fair world.** Mean attempts to recovery after the first 200 failures (see
   ``benchmarks/fair_world.py``) of the learning ranker with parts left out: exact evidence only
   (no fuzzy neighbours, no outcome model), + fuzzy, + model, full; the rules-only, exact-memory
   and oracle baselines of the same runs; mean ± standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence

import fair_world as fw
from rapidfuzz import fuzz, process

from aideploy.knowledge.corpus import Example, heldout_examples, load_bundled, train_examples
from aideploy.knowledge.history import ListHistory
from aideploy.knowledge.ranker import Parts, Ranker, train_classifier
from aideploy.knowledge.ranker.evidence import FUZZY_CUTOFF
from aideploy.knowledge.rules import RuleSet
from aideploy.knowledge.signature import signature_of

NEAR_DUPLICATE = 90.0  # ratio of masked signatures from which a held-out text is a train text

VARIANTS = {
    "exact only": Parts(fuzzy=False, model=False),
    "+ fuzzy": Parts(fuzzy=True, model=False),
    "+ model": Parts(fuzzy=False, model=True),
    "full": Parts(),
}


def deduplicated(test: Sequence[Example], train: Sequence[Example]) -> list[Example]:
    """The held-out texts that are no near duplicate of a train text."""
    train_sigs = [signature_of(e.text) for e in train]
    exact = set(train_sigs)
    kept = []
    for e in test:
        sig = signature_of(e.text)
        if sig in exact:
            continue
        if process.extractOne(sig, train_sigs, scorer=fuzz.ratio, score_cutoff=NEAR_DUPLICATE):
            continue
        kept.append(e)
    return kept


def _top(ranked: Sequence[Sequence[str]], truth: Sequence[str], k: int) -> float:
    return statistics.mean(float(t in r[:k]) for r, t in zip(ranked, truth, strict=True))


def heldout_table() -> list[str]:
    examples = load_bundled()
    train = [e for e in train_examples(examples) if not e.synthetic]
    test = heldout_examples(examples)
    kept = deduplicated(test, train)
    truth = [e.error_class for e in kept]
    texts = [e.text for e in kept]
    rules = RuleSet()
    by_rules = []
    for t in texts:
        scores = rules.class_scores(rules.match(t))
        by_rules.append(sorted(scores, key=lambda c: -scores[c]) if scores else ["unknown"])
    classifier = train_classifier(train_examples(examples))
    by_model = [sorted(p, key=lambda c: -p[c]) for p in classifier.predict_proba(texts)]
    ranker = Ranker(ListHistory(), rules, corpus=train_examples(examples), explore=0.0)
    both = [[c for c, _ in a.class_scores] for a in ranker.analyze_many(texts)]
    train_sigs = [signature_of(e.text) for e in train]
    nearest = []
    for t in texts:
        found = process.extract(signature_of(t), train_sigs, scorer=fuzz.ratio, limit=3)
        nearest.append(list(dict.fromkeys(train[i].error_class for _, _, i in found)))
    rows = [
        ("rules only", by_rules),
        ("classifier only", by_model),
        ("rules + classifier (detection)", both),
        ("fuzzy nearest train text", nearest),
    ]
    lines = [
        f"held-out texts: {len(test)}, near duplicates of a train text removed: "
        f"{len(test) - len(kept)} (signature ratio >= {NEAR_DUPLICATE:g}), kept {len(kept)}",
        f"  {'':32} top-1  top-3",
    ]
    for name, ranked in rows:
        lines.append(f"  {name:32} {_top(ranked, truth, 1):.3f}  {_top(ranked, truth, 3):.3f}")
    return lines


def calibration(seed: int = 1) -> list[str]:
    train = [e for e in train_examples(load_bundled()) if not e.synthetic]
    rng = random.Random(seed)
    same, other = [], []
    for e in train:
        sig = signature_of(e.text)
        same += [fuzz.ratio(sig, signature_of(fw.variant(e.text, rng))) for _ in range(3)]
        other += [
            fuzz.ratio(sig, signature_of(o.text))
            for o in train
            if o.error_class == e.error_class and o.id != e.id
        ]
    lines = ["fuzzy cutoff (ratio of masked signatures), train texts:"]
    for cut in (75.0, 80.0, FUZZY_CUTOFF, 90.0):
        mark = "  <- the ranker's" if cut == FUZZY_CUTOFF else ""
        lines.append(
            f"  >= {cut:g}: variants of the same text {statistics.mean(s >= cut for s in same):.3f}"
            f", other texts of the class {statistics.mean(s >= cut for s in other):.3f}{mark}"
        )
    return lines


def world_table(n: int, seeds: Sequence[int]) -> list[str]:
    results: dict[str, list[float]] = {}
    follow: dict[str, list[int]] = {}
    groups: dict[str, dict[str, list[int]]] = {}  # advisor -> group -> [failures, attempts]
    for seed in seeds:
        tracks = fw.simulate(n, seed, variants=VARIANTS)
        for name, t in tracks.items():
            results.setdefault(name, []).append(t.mean())
            follow.setdefault(name, []).extend(t.follows())
            for g, (count, attempts) in t.by_group().items():
                acc = groups.setdefault(name, {}).setdefault(g, [0, 0])
                acc[0] += count
                acc[1] += attempts
    base = statistics.mean(results["exact only"])
    lines = [
        f"fair world, {n} failures, seeds {' '.join(map(str, seeds))} "
        f"({fw.DEFAULT_WORLD.describe()}): mean attempts after the first {fw.WARMUP}",
    ]
    for name in [*VARIANTS, "rules", "memory", "cause memory", "random", "oracle"]:
        m = statistics.mean(results[name])
        gain = (
            f"  {100 * (base - m) / base:.1f}% fewer attempts than exact only"
            if name in VARIANTS and name != "exact only"
            else ""
        )
        lines.append(f"  {name:12} {fw.spread(results[name])}{gain}")
    oracle = statistics.mean(results["oracle"])
    full = statistics.mean(results["full"])
    f = follow["full"]
    cause_memory = statistics.mean(results["cause memory"])
    lines.append(
        f"  full vs oracle: {100 * (full / oracle - 1):+.1f}%; vs exact memory: "
        f"{full - statistics.mean(results['memory']):+.3f} attempts; cause memory vs oracle: "
        f"{100 * (cause_memory / oracle - 1):+.1f}%"
    )
    lines.append(
        "  where the attempts go (all seeds): failures, then mean attempts of each advisor"
    )
    shown = ("full", "cause memory", "memory", "rules", "oracle")
    lines.append(f"    {'':22} {'failures':>8}  " + "  ".join(f"{s:>12}" for s in shown))
    for g in fw.GROUPS:
        count = groups["oracle"][g][0]
        cells = "  ".join(
            f"{groups[s][g][1] / count:12.3f}" if count else f"{'-':>12}" for s in shown
        )
        lines.append(f"    {g:22} {count:8d}  {cells}")
    if f:
        lines.append(
            f"  drift: outcomes from the new fix's first recovery to its first place: "
            f"mean {statistics.mean(f):.2f}, max {max(f)}, within 3 {statistics.mean(x <= 3 for x in f):.2f}"
            f" ({len(f)} drifted pairs)"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--failures", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--skip-world", action="store_true", help="only the held-out texts")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for line in [*heldout_table(), "", *calibration()]:
        print(line, flush=True)
    if not args.skip_world:
        print()
        for line in world_table(args.failures, args.seeds):
            print(line, flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
