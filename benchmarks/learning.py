"""Learning benchmark: fault-injection simulation + held-out classification.

Run: ``python benchmarks/learning.py [--failures 1000] [--seed 7]``; the shares below can be
changed with ``--second-fix``, ``--context``, ``--drift`` and ``--fix-fails`` (see ``--help``) to
see how each sets the difficulty; the figures in the README use the defaults.

Simulation. Failures are drawn (Zipf-like, so errors recur as they do across real deployments)
from the real error texts of the corpus' train split, with their masked parts (PIDs, ports,
sizes, times: the numbers the signature masks) re-filled with other digits so the same error
looks different on each "machine"; numbers that name the error (exit codes, errnos, HTTP
statuses, ``id_ed25519``) stay. Records whose texts have the same signature are one error: they
share their fixes, and "seen" means that error met before in that step. Each failure has a
hidden set of strategies that fix it: the record's ``strategy`` field or its class default,
except that

* a quarter of the errors need the class's *second* strategy (the rules' first guess is wrong);
* a fifth of the errors are context-dependent: in one deployment step one fix works, in another
  step a different one (e.g. "Permission denied" -> fix_ownership vs npm_user_prefix);
* at the middle of the stream the fix of a tenth of the errors changes (drift);
* a right fix still fails 4% of the time, a wrong one succeeds 2% of the time (noise).

Each advisor gets up to 5 attempts per failure (manual_intervention ends the episode
unrecovered, scored as 6 attempts). Each attempt runs the advisor's first candidate given the
strategies that already failed in the episode (``exclude``, one entry per failure): the ranker
demotes those (a right fix that failed by chance comes back after the other candidates, within
the budget), the guide table drops them. Reported per window of 50 failures: mean attempts to
recovery, first-try rate, recovery within 3 attempts, cumulative regret against the oracle, for
(a) the learning Ranker, (b) the guide's fixed first-match ten-regex table, (c) an oracle.
After the first 200 failures the summary also shows (d) a perfect memory: it knows which error
each failure is (the error and the step, not a signature guessed from the text) and tries first
the strategy that last recovered it there, the class's defaults for an error it has not seen
recover, under the same retry rule as the ranker. It measures what remembering each error
exactly is worth in this simulation (first encounters, noise and drift cost it too); it does not
generalise from one error to another as the ranker does.

Classification. Top-1/top-3 error-class accuracy on the held-out ``test`` split (never used for
rules or the classifier) for the Ranker vs the ten-regex table.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aideploy.core.recovery import Failure, Outcome
from aideploy.core.result import Result
from aideploy.engine.recovery import RecoveryAdvisor
from aideploy.knowledge.classes import STRATEGIES, strategies_for
from aideploy.knowledge.corpus import Example, heldout_examples, load_bundled, train_examples
from aideploy.knowledge.history import ListHistory
from aideploy.knowledge.ranker import Ranker, _train_classifier
from aideploy.knowledge.rules import GuideTable
from aideploy.knowledge.signature import signature_of

MAX_ATTEMPTS = 5
UNRECOVERED = MAX_ATTEMPTS + 1
MANUAL = "manual_intervention"
WINDOW = 50
P_WRONG = 0.02
STEPS = ("install_packages", "build_frontend", "setup_backend", "configure_web", "start_app")


@dataclass(frozen=True)
class Scenario:
    """How hard the simulated world is: the shares the module docstring describes."""

    second_fix: float = 0.25  # errors whose fix is the class's second strategy
    context: float = 0.2  # errors with another fix in a second step
    drift: float = 0.1  # errors whose fix changes at the middle of the stream
    fix_fails: float = 0.04  # how often a right fix fails anyway

    def describe(self) -> str:
        return (
            f"second fix {self.second_fix:g}, context-dependent {self.context:g}, "
            f"drift {self.drift:g}, right fix fails {self.fix_fails:g}"
        )


DEFAULT = Scenario()


@dataclass
class Fault:
    example: Example
    fixes: dict[str, str]  # step -> strategy that fixes it
    default_step: str
    key: str  # the error: the first record with this signature
    spans: list[tuple[int, int]] = field(default_factory=list)  # the parts re-filled per draw

    def fix_for(self, step: str) -> str:
        return self.fixes.get(step, self.fixes[self.default_step])


@dataclass
class Event:
    fault: Fault
    step: str
    text: str

    @property
    def key(self) -> str:
        """The error met in its step (what "seen" and the perfect memory go by)."""
        return self.fault.key + "|" + self.step


@dataclass
class Track:
    attempts: list[int] = field(default_factory=list)
    first: list[bool] = field(default_factory=list)
    seen: list[bool] = field(default_factory=list)
    usual: list[bool] = field(default_factory=list)  # the fix is the class's first default

    def add(self, attempts: int, *, seen: bool, usual: bool) -> None:
        self.attempts.append(attempts)
        self.first.append(attempts == 1)
        self.seen.append(seen)
        self.usual.append(usual)


_NUMBER = re.compile(r"(?<![\d.])\d{3,6}(?![\d.])")


def variable_spans(text: str, rng: random.Random) -> list[tuple[int, int]]:
    """Where ``text`` has a number the signature masks (a PID, port, size or time): numbers it
    keeps (exit codes, errnos, HTTP statuses, years in dates, ``id_ed25519``) name the error."""
    sig = signature_of(text)
    spans = []
    for m in _NUMBER.finditer(text):
        probes = [_digits(len(m.group()), rng) for _ in range(2)]
        if all(
            signature_of(text[: m.start()] + p + text[m.end() :]) == sig
            for p in probes
            if p != m.group()
        ):
            spans.append(m.span())
    return spans


def _digits(n: int, rng: random.Random) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(n - 1))


def _reroll(text: str, spans: Sequence[tuple[int, int]], rng: random.Random) -> str:
    """Same error, another machine: the masked parts re-filled with other digits."""
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], _digits(end - start, rng)]
        last = end
    return "".join([*out, text[last:]])


def build_faults(
    examples: Sequence[Example], rng: random.Random, scenario: Scenario = DEFAULT
) -> list[Fault]:
    faults = []
    by_signature: dict[str, Fault] = {}
    for ex in examples:
        # texts with the same signature are one error to whoever reads them: they share a fix
        sig = signature_of(ex.text)
        same = by_signature.get(sig)
        if same is not None:
            faults.append(Fault(ex, same.fixes, same.default_step, key=same.key))
            continue
        defaults = _automatic(ex.error_class)
        base = ex.strategy if ex.strategy in STRATEGIES else ""
        if not base:
            base = defaults[0] if defaults else MANUAL
        if len(defaults) > 1 and rng.random() < scenario.second_fix:
            base = defaults[1] if base == defaults[0] else defaults[0]
        step = rng.choice(STEPS)
        fixes = {step: base}
        if rng.random() < scenario.context:
            others = [s for s in defaults if s != base] or ["retry_with_backoff"]
            other_step = rng.choice([s for s in STEPS if s != step])
            fixes[other_step] = rng.choice(others)
        faults.append(Fault(ex, fixes, step, key=ex.id))
        by_signature[sig] = faults[-1]
    return faults


def build_stream(faults: list[Fault], n: int, rng: random.Random) -> list[Event]:
    order = list(range(len(faults)))
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(order))]
    events = []
    for _ in range(n):
        fault = faults[rng.choices(order, weights)[0]]
        step = rng.choice(list(fault.fixes))
        events.append(Event(fault, step, _reroll(fault.example.text, fault.spans, rng)))
    return events


def drift(faults: list[Fault], rng: random.Random, share: float = DEFAULT.drift) -> None:
    for fault in rng.sample(faults, round(len(faults) * share)):
        defaults = [s for s in strategies_for(fault.example.error_class)]
        options = [s for s in defaults if s not in fault.fixes.values()] + ["retry_with_backoff"]
        new = options[0]
        for step in fault.fixes:
            fault.fixes[step] = new


def _automatic(error_class: str) -> list[str]:
    """The class's default strategies, manual intervention left out."""
    return [s for s in strategies_for(error_class) if s != MANUAL]


def _first_default(fault: Fault) -> str:
    defaults = _automatic(fault.example.error_class)
    return defaults[0] if defaults else MANUAL


def works(strategy: str, right: str, rng: random.Random, scenario: Scenario = DEFAULT) -> bool:
    if strategy == MANUAL:
        # pausing for a person is the right call only for errors nothing automatic fixes
        return right == MANUAL
    return rng.random() < (1.0 - scenario.fix_fails if strategy == right else P_WRONG)


def run_advisor(
    advisor: RecoveryAdvisor, event: Event, rng: random.Random, scenario: Scenario = DEFAULT
) -> int:
    result = Result(
        command="step", host="sim", exit_code=1, stdout="", stderr=event.text, duration=0.0
    )
    failure: Failure = advisor.detect(event.step, result)
    right = event.fault.fix_for(event.step)
    tried: list[str] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        cands = advisor.candidates(failure, exclude=tried)
        if not cands:
            return UNRECOVERED
        choice = cands[0]  # the advisor orders fresh and demoted (already failed) strategies
        ok = works(choice.strategy, right, rng, scenario)
        advisor.record(
            failure,
            choice.strategy,
            Outcome.RECOVERED if ok else Outcome.FAILED,
            duration=1.0,
            decided_by=choice.decided_by,
        )
        if ok:
            return attempt
        if choice.strategy == MANUAL:
            return UNRECOVERED
        tried.append(choice.strategy)
    return UNRECOVERED


def run_oracle(event: Event, rng: random.Random, scenario: Scenario = DEFAULT) -> int:
    right = event.fault.fix_for(event.step)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if works(right, right, rng, scenario):
            return attempt
    return UNRECOVERED


def memory_plan(event: Event, known: str | None) -> list[str]:
    """What a perfect memory tries, in order: the strategy that last recovered this very error
    in this step (its identity known, not guessed from text), else the class's defaults; a fix
    that failed comes back only after one other strategy, as the ranker's does; manual last."""
    defaults = _automatic(event.fault.example.error_class)
    others = [s for s in [*defaults, "retry_with_backoff"] if s != known]
    if known == MANUAL:
        return [MANUAL]
    if known is None:
        return [*others, MANUAL]
    return [known, *others[:1], known, *others[1:], MANUAL]


def run_memory(
    memory: dict[str, str], event: Event, rng: random.Random, scenario: Scenario = DEFAULT
) -> int:
    key = event.key
    right = event.fault.fix_for(event.step)
    for attempt, choice in enumerate(memory_plan(event, memory.get(key))[:MAX_ATTEMPTS], 1):
        if works(choice, right, rng, scenario):
            memory[key] = choice
            return attempt
        if choice == MANUAL:
            return UNRECOVERED
    return UNRECOVERED


def simulate(
    n: int = 1000,
    seed: int = 7,
    pool: Sequence[Example] | None = None,
    scenario: Scenario = DEFAULT,
) -> dict[str, Track]:
    rng = random.Random(seed)
    examples = [e for e in (pool or train_examples(load_bundled())) if not e.synthetic]
    faults = build_faults(examples, rng, scenario)
    probe_rng = random.Random(seed + 2)
    for fault in faults:
        fault.spans = variable_spans(fault.example.text, probe_rng)
    first_half = build_stream(faults, n // 2, rng)
    events_rng = random.Random(seed + 1)
    tracks = {"ranker": Track(), "guide": Track(), "oracle": Track(), "memory": Track()}
    memory: dict[str, str] = {}
    ranker = Ranker(ListHistory(), seed=seed)
    guide = GuideTable()
    seen: set[str] = set()
    outcome_rngs = {name: random.Random(seed * 31 + i) for i, name in enumerate(tracks)}
    for half in (0, 1):
        events = first_half if half == 0 else build_stream(faults, n - n // 2, events_rng)
        if half == 1:
            drift(faults, rng, scenario.drift)
        for event in events:
            was_seen = event.key in seen
            usual = event.fault.fix_for(event.step) == _first_default(event.fault)
            seen.add(event.key)
            for name, advisor in (("ranker", ranker), ("guide", guide)):
                a = run_advisor(advisor, event, outcome_rngs[name], scenario)  # type: ignore[arg-type]
                tracks[name].add(a, seen=was_seen, usual=usual)
            a = run_oracle(event, outcome_rngs["oracle"], scenario)
            tracks["oracle"].add(a, seen=was_seen, usual=usual)
            a = run_memory(memory, event, outcome_rngs["memory"], scenario)
            tracks["memory"].add(a, seen=was_seen, usual=usual)
    return tracks


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def report(tracks: dict[str, Track]) -> list[str]:
    lines = []
    n = len(tracks["oracle"].attempts)
    oracle = tracks["oracle"].attempts
    header = f"{'failures':>10} " + " ".join(
        f"{name + ' ' + m:>16}"
        for name in ("ranker", "guide", "oracle")
        for m in ("attempts", "first", "<=3", "regret")
    )
    lines.append("per window of 50 failures (regret = cumulative attempts above the oracle)")
    lines.append(header)
    regret = {name: 0 for name in tracks}
    for start in range(0, n, WINDOW):
        cells = []
        for name in ("ranker", "guide", "oracle"):
            t = tracks[name]
            w = t.attempts[start : start + WINDOW]
            regret[name] += sum(
                a - o for a, o in zip(w, oracle[start : start + WINDOW], strict=True)
            )
            cells += [
                f"{_mean(w):16.2f}",
                f"{_mean([float(a == 1) for a in w]):16.2f}",
                f"{_mean([float(a <= 3) for a in w]):16.2f}",
                f"{regret[name]:16d}",
            ]
        lines.append(f"{start + WINDOW:>10} " + " ".join(cells))
    lines.append("")
    lines.append("after the first 200 failures:")
    for name in ("ranker", "guide", "oracle", "memory"):
        t = tracks[name]
        att = t.attempts[200:]
        seen_first = [f for f, s in zip(t.first[200:], t.seen[200:], strict=True) if s]
        seen_att = [a for a, s in zip(att, t.seen[200:], strict=True) if s]
        lines.append(
            f"  {name:7} mean attempts {_mean(att):.3f} (seen signatures {_mean(seen_att):.3f}); "
            f"first-try {_mean([float(a == 1) for a in att]):.3f} "
            f"(seen signatures {_mean([float(f) for f in seen_first]):.3f}); "
            f"within 3 {_mean([float(a <= 3) for a in att]):.3f}; "
            f"unrecovered {_mean([float(a == UNRECOVERED) for a in att]):.3f}"
        )
    t = tracks["oracle"]
    new = [not s for s in t.seen[200:]]
    unusual = [not u for u, n in zip(t.usual[200:], new, strict=True) if n]
    lines.append(
        f"  first encounters (an error met for the first time in its step): {sum(new)} of "
        f"{len(new)}; {sum(unusual)} of them need another fix than their class's first default"
    )
    lines.append(
        "  mean attempts on first encounters: "
        + ", ".join(
            f"{name} "
            + f"{_mean([a for a, n in zip(tracks[name].attempts[200:], new, strict=True) if n]):.3f}"
            for name in ("ranker", "memory", "oracle")
        )
    )
    return lines


def classification() -> list[str]:
    examples = load_bundled()
    test = heldout_examples(examples)
    if not test:
        return ["no held-out examples"]
    ranker = Ranker(ListHistory(), explore=0.0)
    guide = GuideTable()
    analyses = ranker.analyze_many([e.text for e in test])
    top1 = _mean(
        [float(a.error_class == e.error_class) for a, e in zip(analyses, test, strict=True)]
    )
    top3 = _mean(
        [
            float(e.error_class in [c for c, _ in a.class_scores[:3]])
            for a, e in zip(analyses, test, strict=True)
        ]
    )
    g1 = _mean([float(guide.classify(e.text) == e.error_class) for e in test])
    # the text classifier alone (trained on train+synthetic only), without any rule
    classifier = _train_classifier(train_examples(examples))
    ranked = [
        sorted(p, key=p.__getitem__, reverse=True)
        for p in classifier.predict_proba([e.text for e in test])
    ]
    c1 = _mean([float(r[0] == e.error_class) for r, e in zip(ranked, test, strict=True)])
    c3 = _mean([float(e.error_class in r[:3]) for r, e in zip(ranked, test, strict=True)])
    classes = len({e.error_class for e in test})
    return [
        f"held-out classification ({len(test)} real examples, {classes} classes; "
        f"trained on {len(train_examples(examples))} train+synthetic):",
        f"  ranker      top-1 {top1:.3f}  top-3 {top3:.3f}",
        f"  classifier  top-1 {c1:.3f}  top-3 {c3:.3f} (the text model alone, no rules)",
        f"  guide ten   top-1 {g1:.3f}  top-3 {g1:.3f} (one class per text)",
    ]


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {value}")
    return share


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--failures", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    for name, text in (
        ("second_fix", "share of errors fixed by their class's second strategy"),
        ("context", "share of errors with another fix in a second step"),
        ("drift", "share of errors whose fix changes at the middle"),
        ("fix_fails", "how often a right fix fails anyway"),
    ):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=_share,
            default=getattr(DEFAULT, name),
            help=text + " (default %(default)s)",
        )
    args = parser.parse_args(argv)
    scenario = Scenario(args.second_fix, args.context, args.drift, args.fix_fails)
    start = time.perf_counter()
    for line in classification():
        print(line)
    print()
    print(f"simulated world: {scenario.describe()}")
    tracks = simulate(args.failures, args.seed, scenario=scenario)
    for line in report(tracks):
        print(line)
    print(f"\n({time.perf_counter() - start:.1f} s, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
