"""A fair world to learn recovery in: held-out real errors that come back as variants.

Used by ``benchmarks/learning.py`` (``--fair``) and ``benchmarks/learning_ablation.py``.

* **Causes** are the real error texts of the corpus' held-out ``test`` split (never read by the
  rules or the text classifier), one cause per text. Each cause fails in one deployment step, a
  share of them in a second step too.
* **Hidden fixes depend on the cause**, not on its class: the record's own ``strategy`` when it
  names an automatic one, else a draw over the class's automatic defaults (first 45%, second
  30%) and the other strategies the catalogue applies to the class, ``retry_with_backoff``
  included (25%). In a second step the fix is another one.
* **Recurrences are variants**: each time a cause fails again its text is rewritten as another
  machine would print it - other application paths (the file name kept), versions, numbers, IP
  addresses and user names, other wording (``cannot``/``could not``, case), a timestamp or a
  progress line around it. Some variants keep the masked signature, many do not, so remembering
  signatures alone is not enough.
* **Drift**: at the middle of the stream the fix of a share of the causes changes.
* **Noise**: a right fix fails ``fix_fails`` of the time, a wrong one works ``wrong_works``.

Advisors get up to ``MAX_ATTEMPTS`` attempts; manual intervention ends the episode unrecovered
(``UNRECOVERED`` attempts: no cause here needs a person). Every advisor meets the same stream
with the same outcome draws (the n-th attempt on a failure draws the same number for all:
common random numbers, so differences between advisors are their choices, not their luck).
Baselines: ``random`` (the detected class's strategies in a random order), ``rules``
(the ranker's cold order: rules and the text classifier, never learning), ``memory`` (what last
recovered this signature in this step first, else the rules' order), ``cause memory`` (the same
by cause: it always knows a variant for its cause and never takes two causes for one) and
``oracle`` (knows the fix); the baselines keep manual intervention for last.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aideploy.core.recovery import Failure, Outcome
from aideploy.core.result import Result
from aideploy.knowledge.classes import STRATEGIES, related_strategies, strategies_for
from aideploy.knowledge.corpus import Example, heldout_examples, load_bundled
from aideploy.knowledge.history import ListHistory
from aideploy.knowledge.ranker import Parts, Ranker

MAX_ATTEMPTS = 5
UNRECOVERED = MAX_ATTEMPTS + 1
MANUAL = "manual_intervention"
WARMUP = 200  # failures before the figures count
STEPS = ("install_packages", "build_frontend", "setup_backend", "configure_web", "start_app")
FIRST_DEFAULT, SECOND_DEFAULT = 0.45, 0.30  # shares of the hidden fixes; the rest: other ones


@dataclass(frozen=True)
class World:
    # the shares of benchmarks/learning.py's default scenario
    context: float = 0.2  # causes that fail in a second step too, with another fix there
    drift: float = 0.1  # causes whose fix changes at the middle of the stream
    fix_fails: float = 0.04
    wrong_works: float = 0.02
    zipf: float = 0.8  # how unevenly causes recur (rank ** -zipf)

    def describe(self) -> str:
        return (
            f"second step {self.context:g}, drift {self.drift:g}, right fix fails "
            f"{self.fix_fails:g}, wrong one works {self.wrong_works:g}"
        )


DEFAULT_WORLD = World()


@dataclass
class Cause:
    key: str
    example: Example
    fixes: dict[str, str]  # step -> the strategy that fixes it there


@dataclass(frozen=True)
class Event:
    index: int
    cause: Cause
    step: str
    text: str

    @property
    def pair(self) -> str:
        return f"{self.cause.key}|{self.step}"


# --- causes and their fixes --------------------------------------------------------------------


def automatic(names: Sequence[str]) -> list[str]:
    return [n for n in dict.fromkeys(names) if n != MANUAL]


def options(error_class: str) -> list[str]:
    """The automatic strategies a cause of this class may need."""
    return automatic(
        [*strategies_for(error_class), *related_strategies(error_class), "retry_with_backoff"]
    )


def draw_fix(error_class: str, rng: random.Random, avoid: str = "") -> str:
    opts = [o for o in options(error_class) if o != avoid] or ["retry_with_backoff"]
    defaults = [o for o in automatic(strategies_for(error_class)) if o != avoid]
    r = rng.random()
    if defaults and r < FIRST_DEFAULT:
        return defaults[0]
    if len(defaults) > 1 and r < FIRST_DEFAULT + SECOND_DEFAULT:
        return defaults[1]
    rest = [o for o in opts if o not in defaults[:2]] or opts
    return rng.choice(rest)


def build_causes(examples: Sequence[Example], rng: random.Random, world: World) -> list[Cause]:
    causes = []
    for ex in examples:
        labelled = ex.strategy if ex.strategy in STRATEGIES and ex.strategy != MANUAL else ""
        fix = labelled or draw_fix(ex.error_class, rng)
        step = rng.choice(STEPS)
        fixes = {step: fix}
        if rng.random() < world.context:
            other = rng.choice([s for s in STEPS if s != step])
            fixes[other] = draw_fix(ex.error_class, rng, avoid=fix)
        causes.append(Cause(ex.id, ex, fixes))
    return causes


def drift(causes: Sequence[Cause], rng: random.Random, share: float) -> list[str]:
    """Change the fix of ``share`` of the causes (in every step); the pairs that changed."""
    changed = []
    for cause in rng.sample(list(causes), round(len(causes) * share)):
        for step, fix in cause.fixes.items():
            cause.fixes[step] = draw_fix(cause.example.error_class, rng, avoid=fix)
            if cause.fixes[step] != fix:  # a class with one option cannot drift
                changed.append(f"{cause.key}|{step}")
    return changed


# --- variants ----------------------------------------------------------------------------------

_APP_PATH = re.compile(
    r"(?<![\w.])(?:/srv|/opt|/home|/var/www|/tmp|/app)(?:/[\w.@+-]+)*/([\w.@+-]+)"
)
_VERSION = re.compile(r"\b\d+\.\d+(?:\.\d+)+\b")
_IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_NUMBER = re.compile(r"(?<![\w.])\d{3,6}(?![\w.])")
# the numbers that say which error it is stay: an errno, exit status, status or error code, a
# signal - another machine prints the same ones for the same cause
_CODE_BEFORE = re.compile(r"(?i)(?:errno|exit (?:code|status)|status|code|signal|returned)[ =:]*$")
_USER = re.compile(r"\b(deploy|ubuntu|www-data|app|admin)\b")
PREFIXES = ("/srv/app", "/opt/shop", "/home/deploy/site", "/var/www/app", "/home/ubuntu/project")
USERS = ("deploy", "ubuntu", "app", "admin")
WORDING = (
    (re.compile(r"\bcannot\b"), ("cannot", "can not", "could not")),
    (re.compile(r"\bCould not\b"), ("Could not", "Cannot", "Couldn't")),
    (re.compile(r"\bfailed\b"), ("failed", "Failed", "FAILED")),
    (re.compile(r"\bError:"), ("Error:", "error:", "ERROR:")),
)
NOISE = ("Reading package lists... Done", "+ ./deploy.sh", "npm WARN deprecated core-js@2.6.12")


def _other_number(m: re.Match[str], rng: random.Random) -> str:
    if _CODE_BEFORE.search(m.string[max(0, m.start() - 16) : m.start()]):
        return m.group()
    n = len(m.group())
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def variant(text: str, rng: random.Random) -> str:
    """The same cause as another machine prints it."""
    prefix = rng.choice(PREFIXES)
    text = _APP_PATH.sub(lambda m: f"{prefix}/{m.group(1)}", text)
    text = _VERSION.sub(
        lambda m: ".".join(str(rng.randint(0, 20)) for _ in m.group().split(".")), text
    )
    text = _IP.sub(
        lambda m: f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", text
    )
    text = _NUMBER.sub(lambda m: _other_number(m, rng), text)
    user = rng.choice(USERS)
    text = _USER.sub(user, text)
    for pattern, words in WORDING:
        if rng.random() < 0.5:
            text = pattern.sub(rng.choice(words), text)
    if rng.random() < 0.3:
        text = f"{rng.choice(NOISE)}\n{text}"
    if rng.random() < 0.3:
        stamp = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
        text = "\n".join(
            f"{stamp} {line}" if i == 0 else line for i, line in enumerate(text.split("\n"))
        )
    return text


def build_stream(causes: Sequence[Cause], n: int, rng: random.Random, world: World) -> list[Event]:
    order = list(causes)
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** world.zipf for rank in range(len(order))]
    events = []
    for i in range(n):
        cause = rng.choices(order, weights)[0]
        step = rng.choice(list(cause.fixes))
        events.append(Event(i, cause, step, variant(cause.example.text, rng)))
    return events


# --- advisors ----------------------------------------------------------------------------------


def _result(text: str) -> Result:
    return Result(command="step", host="sim", exit_code=1, stdout="", stderr=text, duration=0.0)


class Advisor:
    """One way of choosing the next strategy to try (``tried``: the ones failed in this episode)."""

    name = "advisor"

    def start(self, event: Event) -> None: ...

    def next(self, tried: Sequence[str]) -> str:
        raise NotImplementedError

    def learn(self, strategy: str, ok: bool) -> None: ...


class RankerAdvisor(Advisor):
    def __init__(self, name: str, ranker: Ranker, *, learning: bool = True) -> None:
        self.name, self.ranker, self.learning = name, ranker, learning
        self._failure: Failure | None = None

    def start(self, event: Event) -> None:
        self._failure = self.ranker.detect(event.step, _result(event.text))

    def first(self) -> str:
        assert self._failure is not None
        return self.ranker.candidates(self._failure)[0].strategy

    def next(self, tried: Sequence[str]) -> str:
        assert self._failure is not None
        return self.ranker.candidates(self._failure, exclude=list(tried))[0].strategy

    def learn(self, strategy: str, ok: bool) -> None:
        if self.learning and self._failure is not None:
            outcome = Outcome.RECOVERED if ok else Outcome.FAILED
            self.ranker.record(self._failure, strategy, outcome, duration=1.0, decided_by="sim")


class PlanAdvisor(Advisor):
    """Tries a fixed plan in order, the first strategy not yet tried (then the plan's head)."""

    def __init__(self, name: str, plan: Callable[[Event], list[str]]) -> None:
        self.name, self._plan_of = name, plan
        self._plan: list[str] = []

    def start(self, event: Event) -> None:
        self._plan = self._plan_of(event)

    def next(self, tried: Sequence[str]) -> str:
        return next((s for s in self._plan if s not in tried), self._plan[0])


class MemoryAdvisor(PlanAdvisor):
    """What last recovered this signature in this step first, else the cold order."""

    name = "memory"
    retries_once = False  # a remembered fix that failed once is tried again at once

    def __init__(self, cold: Ranker) -> None:
        self.cold = cold
        self.memory: dict[tuple[str, str], str] = {}
        self._key = ("", "")
        super().__init__(self.name, self._memory_plan)

    def key(self, event: Event, signature: str) -> tuple[str, str]:
        """What the memory knows a failure by."""
        return (signature, event.step)

    def _memory_plan(self, event: Event) -> list[str]:
        failure = self.cold.detect(event.step, _result(event.text))
        self._key = self.key(event, failure.signature)
        plan = manual_last([c.strategy for c in self.cold.candidates(failure)])
        known = self.memory.get(self._key)
        return plan if known is None else [known, *[s for s in plan if s != known]]

    def next(self, tried: Sequence[str]) -> str:
        known = self.memory.get(self._key)
        if self.retries_once and known is not None and list(tried) == [known]:
            return known
        return super().next(tried)

    def learn(self, strategy: str, ok: bool) -> None:
        if ok:
            self.memory[self._key] = strategy


class CauseMemoryAdvisor(MemoryAdvisor):
    """What last recovered this *cause* in this step first, else the cold order: a learner that
    always knows a variant for its cause and never takes two causes for one - the best any
    advisor that does not know the hidden fixes can do on repeats, and no better than the
    rules on a cause met for the first time. A remembered fix that failed once is tried again
    before the others (chance failures are likelier than a change), then the cold order."""

    name = "cause memory"
    retries_once = True

    def key(self, event: Event, signature: str) -> tuple[str, str]:
        return (event.cause.key, event.step)


def random_advisor(cold: Ranker, rng: random.Random) -> PlanAdvisor:
    def plan(event: Event) -> list[str]:
        failure = cold.detect(event.step, _result(event.text))
        opts = options(failure.error_class)
        rng.shuffle(opts)
        return [*opts, MANUAL]

    return PlanAdvisor("random", plan)


def manual_last(plan: list[str]) -> list[str]:
    """A baseline's plan with manual intervention moved last (no cause here needs a person)."""
    return [s for s in plan if s != MANUAL] + [MANUAL]


def rules_advisor(cold: Ranker) -> PlanAdvisor:
    def plan(event: Event) -> list[str]:
        failure = cold.detect(event.step, _result(event.text))
        return manual_last([c.strategy for c in cold.candidates(failure)])

    return PlanAdvisor("rules", plan)


def oracle_advisor() -> PlanAdvisor:
    return PlanAdvisor("oracle", lambda e: [e.cause.fixes[e.step]])


# --- running -----------------------------------------------------------------------------------


def works(strategy: str, right: str, draw: float, world: World) -> bool:
    """Whether a strategy recovers the failure, for a uniform ``draw`` in [0, 1)."""
    if strategy == MANUAL:
        return False
    return draw < (1.0 - world.fix_fails if strategy == right else world.wrong_works)


class Draws:
    """The outcome draws of one run, common to every advisor: the n-th attempt on the k-th
    failure draws the same number whoever makes it, so advisors compared in one run differ by
    their choices, not by their luck."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def of(self, failure: int) -> Callable[[int], float]:
        return lambda attempt: random.Random(f"{self.seed}:{failure}:{attempt}").random()


@dataclass(frozen=True)
class Episode:
    attempts: int
    first: str  # the strategy tried first
    fixed_by: str  # the strategy that recovered it ("" when none did)


def episode(advisor: Advisor, event: Event, draw: Callable[[int], float], world: World) -> Episode:
    """One failure met by one advisor; ``draw(attempt)``: the attempt's uniform outcome draw."""
    advisor.start(event)
    right = event.cause.fixes[event.step]
    tried: list[str] = []
    first = ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        choice = advisor.next(tried)
        first = first or choice
        ok = works(choice, right, draw(attempt), world)
        advisor.learn(choice, ok)
        if ok:
            return Episode(attempt, first, choice)
        if choice == MANUAL:
            break
        tried.append(choice)
    return Episode(UNRECOVERED, first, "")


@dataclass
class Drifted:
    """One drifted (cause, step) pair seen by one advisor after the drift."""

    outcomes: int = 0  # outcomes recorded on it since the drift
    found: int | None = None  # outcomes before the new fix first recovered it
    search: int | None = None  # outcomes before its first try was the new fix
    follow: int | None = None  # of those, the ones after the new fix had first recovered it


#: what a failure is to every advisor, by what the stream showed before it
GROUPS = ("new cause", "cause in a new step", "repeat", "repeat after drift")


@dataclass
class Track:
    attempts: list[int] = field(default_factory=list)
    drifted: dict[str, Drifted] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # each failure's group (see GROUPS)

    def by_group(self) -> dict[str, tuple[int, int]]:
        """Per group, after the warm-up: (failures, attempts)."""
        out = {g: (0, 0) for g in GROUPS}
        for g, a in zip(self.groups[WARMUP:], self.after_warmup(), strict=True):
            n, total = out[g]
            out[g] = (n + 1, total + a)
        return out

    def after_warmup(self) -> list[int]:
        return self.attempts[WARMUP:]

    def mean(self) -> float:
        xs = self.after_warmup()
        return sum(xs) / len(xs) if xs else float("nan")

    def follows(self) -> list[int]:
        """Per drifted pair put right: outcomes from the new fix's first recovery to its first
        place in the order."""
        return [d.follow for d in self.drifted.values() if d.follow is not None]

    def watch(self, event: Event, ep: Episode) -> None:
        d = self.drifted[event.pair]
        if d.search is not None:
            return
        right = event.cause.fixes[event.step]
        if ep.first == right:
            d.search = d.outcomes
            d.follow = d.outcomes - (d.found if d.found is not None else d.outcomes)
            return
        if ep.fixed_by == right and d.found is None:
            d.found = d.outcomes + ep.attempts
        d.outcomes += ep.attempts


def heldout_pool() -> list[Example]:
    return [e for e in heldout_examples(load_bundled()) if not e.synthetic]


def ranker_variants() -> dict[str, Parts]:
    """The learning ranker, whole and with parts left out (ablation)."""
    return {
        "ranker": Parts(),
        "no fuzzy": Parts(fuzzy=False),
        "no model": Parts(model=False),
        "exact only": Parts(fuzzy=False, model=False),
    }


def simulate(
    n: int = 1000,
    seed: int = 7,
    world: World = DEFAULT_WORLD,
    pool: Sequence[Example] | None = None,
    variants: dict[str, Parts] | None = None,
) -> dict[str, Track]:
    """Every advisor over one stream, with common outcome draws; tracks by advisor name."""
    rng = random.Random(seed)
    causes = build_causes(pool if pool is not None else heldout_pool(), rng, world)
    first = build_stream(causes, n // 2, random.Random(seed + 1), world)
    cold = Ranker(ListHistory(), explore=0.0)
    advisors: list[Advisor] = [
        RankerAdvisor(name, Ranker(ListHistory(), seed=seed, parts=parts))
        for name, parts in (variants if variants is not None else {"ranker": Parts()}).items()
    ]
    advisors += [
        MemoryAdvisor(cold),
        CauseMemoryAdvisor(cold),
        rules_advisor(cold),
        random_advisor(cold, random.Random(seed + 3)),
        oracle_advisor(),
    ]
    tracks = {a.name: Track() for a in advisors}
    draws = Draws(seed * 31 + 17)
    drifted: set[str] = set()
    k = 0  # failures met so far
    seen_causes: set[str] = set()
    seen_pairs: set[str] = set()
    for half in (0, 1):
        if half == 0:
            events = first
        else:
            drifted = set(drift(causes, rng, world.drift))
            for t in tracks.values():
                t.drifted = {pair: Drifted() for pair in drifted}
            events = build_stream(causes, n - n // 2, random.Random(seed + 2), world)
        for event in events:
            k += 1
            if event.cause.key not in seen_causes:
                group = GROUPS[0]
            elif event.pair not in seen_pairs:
                group = GROUPS[1]
            else:
                group = GROUPS[3] if event.pair in drifted else GROUPS[2]
            seen_causes.add(event.cause.key)
            seen_pairs.add(event.pair)
            for a in advisors:
                tracks[a.name].groups.append(group)
                ep = episode(a, event, draws.of(k), world)
                tracks[a.name].attempts.append(ep.attempts)
                if event.pair in drifted:
                    tracks[a.name].watch(event, ep)
    return tracks


def summary(tracks: dict[str, Track]) -> dict[str, float]:
    return {name: t.mean() for name, t in tracks.items()}


def spread(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "nan"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"
