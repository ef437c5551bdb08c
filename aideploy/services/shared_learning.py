"""One knowledge base and one ranker for every host of a fleet run.

The hosts of a run deploy in parallel threads; they share one ranker, so what one host learns
(an outcome recorded the moment it is decided) is what the next host's ranking sees, and one
knowledge-base writer. Every call into the ranker and every write into the knowledge base goes
through one lock: SQLite takes one writer at a time anyway, and the ranker's tallies are not
thread-safe.

On top of the ranker's own learning, a recovery that fixed a failure on one host of the run is
put first for the same failure (same signature) on every later host, with a reason that says
where it was learned.

The knowledge base is written by one writer thread: hosts hand their events to a queue and go
on (a host never waits for another host's write); :meth:`SharedLearning.close` writes what is
left and stops the thread. For SQLite one connection stays open for the run, so the many short
write transactions do not each end with a checkpoint of the write-ahead log.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from aideploy.core.events import Event, EventSink
from aideploy.core.recovery import Candidate, Failure, Outcome
from aideploy.core.result import Result
from aideploy.engine.recovery import LazyAdvisor, RecoveryAdvisor, Strategy
from aideploy.knowledge.recorder import KnowledgeRecorder
from aideploy.knowledge.store import KnowledgeBase

log = logging.getLogger("aideploy.fleet")

#: how a candidate put first by what this run learned is marked (``decided_by``)
LEARNED_IN_RUN = "run"


@dataclass(frozen=True)
class Learned:
    """A recovery that fixed a failure on one host of the run."""

    host: str
    step: str
    error_class: str
    strategy: str
    signature: str


class SharedLearning:
    def __init__(self, knowledge: KnowledgeBase, build: Callable[[], RecoveryAdvisor]) -> None:
        self.knowledge = knowledge
        self._lock = threading.RLock()
        self._advisor = LazyAdvisor(build)
        self._recorder = KnowledgeRecorder(knowledge)
        self._fixes: dict[str, Learned] = {}
        self.learned: list[Learned] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._keeper: Any = None
        self._strategies: dict[str, Strategy] | None = None

    def __enter__(self) -> SharedLearning:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                with self._lock:
                    self._recorder.publish(event)
            except Exception as exc:  # one lost record never stops the run
                log.error("the knowledge base could not take %s: %s", type(event).__name__, exc)

    def close(self) -> None:
        """Write every event still queued, then stop the writer."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def advisor(self, host: str) -> RecoveryAdvisor:
        """The advisor one host's deployment talks to."""
        return _HostAdvisor(self, host)

    def recorder(self) -> EventSink:
        """The knowledge-base sink every host's deployment publishes to (queued to the one
        writer thread, started on first use)."""
        with self._lock:
            if self._writer is None:
                if self.knowledge.dialect == "sqlite":
                    self._keeper = self.knowledge.engine.connect()
                self._writer = threading.Thread(
                    target=self._write, name="aideploy-kb-writer", daemon=True
                )
                self._writer.start()
        return _QueuedSink(self._queue)

    def strategies(self, build: Callable[[], dict[str, Strategy]]) -> dict[str, Strategy]:
        """The strategies every host's deployment may run: built once per run by ``build``
        (plugins are looked up and the knowledge base read once, not once per host)."""
        with self._lock:
            if self._strategies is None:
                self._strategies = build()
            return self._strategies

    def fix_for(self, signature: str) -> Learned | None:
        with self._lock:
            return self._fixes.get(signature)

    def learned_on(self, host: str) -> list[Learned]:
        with self._lock:
            return [entry for entry in self.learned if entry.host == host]


class _QueuedSink:
    def __init__(self, to: queue.Queue[Event | None]) -> None:
        self._queue = to

    def publish(self, event: Event) -> None:
        self._queue.put(event)


class _HostAdvisor:
    """The shared advisor, seen from one host: calls are serialized; a fix learned on another
    host of the run goes first."""

    def __init__(self, shared: SharedLearning, host: str) -> None:
        self._shared = shared
        self._host = host

    def detect(self, step: str, result: Result) -> Failure:
        with self._shared._lock:
            return self._shared._advisor.detect(step, result)

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        shared = self._shared
        with shared._lock:
            ranked = shared._advisor.candidates(failure, exclude=exclude)
            fix = shared._fixes.get(failure.signature)
        if fix is None or fix.strategy in exclude:
            return ranked
        top = max((c.score for c in ranked), default=1.0)
        first = Candidate(
            fix.strategy,
            top,
            f"fixed the same failure on {fix.host} earlier in this run",
            LEARNED_IN_RUN,
        )
        return [first, *(c for c in ranked if c.strategy != fix.strategy)]

    def record(
        self,
        failure: Failure,
        strategy: str,
        outcome: Outcome,
        *,
        duration: float,
        decided_by: str,
        deployment_id: str | None = None,
    ) -> None:
        shared = self._shared
        with shared._lock:
            shared._advisor.record(
                failure,
                strategy,
                outcome,
                duration=duration,
                decided_by=decided_by,
                deployment_id=deployment_id,
            )
            if outcome is Outcome.RECOVERED and failure.signature not in shared._fixes:
                entry = Learned(
                    self._host, failure.step, failure.error_class, strategy, failure.signature
                )
                shared._fixes[failure.signature] = entry
                shared.learned.append(entry)
