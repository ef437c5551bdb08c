"""The hosts of a fleet run share one ranker and one knowledge-base writer: what one host learns
is tried first on the next, and hosts writing at once lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aideploy.core.errors import LockError
from aideploy.core.events import AttemptDecided, DeploymentEnded, DeploymentStarted
from aideploy.core.recovery import Outcome
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services import compose
from aideploy.services.host_lock import host_lock
from aideploy.services.shared_learning import LEARNED_IN_RUN, SharedLearning

TEXT = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"


def _shared(tmp_path: Path) -> SharedLearning:
    kb = KnowledgeBase.open(str(tmp_path / "kb.db"))
    return SharedLearning(kb, lambda: compose.build_ranker(kb, explore=0))


def test_a_fix_learned_on_one_host_is_tried_first_on_the_next(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    host1, host7 = shared.advisor("web01"), shared.advisor("web07")
    failure = compose.build_ranker(shared.knowledge, explore=0).failure_of(TEXT, "install")
    before = [c.strategy for c in host1.candidates(failure)]
    assert len(before) >= 2
    # on host 1 the first choice failed; the second one fixed it
    fix = before[1]
    host1.record(failure, before[0], Outcome.FAILED, duration=1.0, decided_by="rule")
    host1.record(failure, fix, Outcome.RECOVERED, duration=1.0, decided_by="rule")
    ranked = host7.candidates(failure)
    assert ranked[0].strategy == fix
    assert ranked[0].decided_by == LEARNED_IN_RUN
    assert "web01" in ranked[0].why
    assert [c.strategy for c in ranked].count(fix) == 1
    # once it failed on this host too, the run's learning no longer forces it first (the ranker
    # may still rank it, demoted, on its own evidence)
    again = host7.candidates(failure, exclude=[fix])
    assert all(c.decided_by != LEARNED_IN_RUN for c in again)
    assert [(x.host, x.strategy) for x in shared.learned] == [("web01", fix)]
    assert shared.learned_on("web07") == []


def test_a_failure_nobody_fixed_keeps_the_rankers_order(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    failure = compose.build_ranker(shared.knowledge, explore=0).failure_of(TEXT, "install")
    plain = [
        c.strategy for c in compose.build_ranker(shared.knowledge, explore=0).candidates(failure)
    ]
    advisor = shared.advisor("web01")
    advisor.record(failure, plain[0], Outcome.FAILED, duration=1.0, decided_by="rule")
    assert all(c.decided_by != LEARNED_IN_RUN for c in advisor.candidates(failure))
    assert shared.learned == []


def test_hosts_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    shared = _shared(tmp_path)
    failure = compose.build_ranker(shared.knowledge, explore=0).failure_of(TEXT, "install")
    sink = shared.recorder()
    hosts, attempts = 8, 5
    start = threading.Barrier(hosts)
    errors: list[BaseException] = []

    def host(index: int) -> None:
        deployment = f"dep-{index}"
        advisor = shared.advisor(f"web{index:02d}")
        try:
            start.wait()
            sink.publish(DeploymentStarted(deployment, "p", f"web{index:02d}", None))
            for n in range(attempts):
                advisor.candidates(failure)
                outcome = Outcome.RECOVERED if n == attempts - 1 else Outcome.FAILED
                sink.publish(AttemptDecided(deployment, failure, f"s{n}", outcome, 0.1, "rule"))
                advisor.record(failure, f"s{n}", outcome, duration=0.1, decided_by="rule")
            sink.publish(DeploymentEnded(deployment, "completed", None))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(i,)) for i in range(hosts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    shared.close()  # the writer has written everything queued
    counts = shared.knowledge.counts()
    assert counts["attempts"] == hosts * attempts, counts
    assert counts["deployments"] == hosts
    assert len(shared.learned) == 1  # the first host to fix it taught the others


def test_one_deployment_per_app_and_host_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDEPLOY_HOME", str(tmp_path / "home"))
    with host_lock("10.0.0.5", 22, "shop", holder="run run-1"):
        held = r"shop on 10.0.0.5:22 is being deployed by run run-1"
        with pytest.raises(LockError, match=held), host_lock("10.0.0.5", 22, "shop", holder="x"):
            pass
        with host_lock("10.0.0.5", 22, "blog", holder="run run-2"):  # another app: fine
            pass
        with host_lock("10.0.0.6", 22, "shop", holder="run run-2"):  # another host: fine
            pass
    with host_lock("10.0.0.5", 22, "shop", holder="run run-3"):  # released
        pass
