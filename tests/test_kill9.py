"""kill -9 at points spread over a deployment with a failing step and its recovery: every
deployment is resumable and the knowledge base loses no recovery attempt's outcome (the attempt is
recorded pending before the strategy acts and settled on resume). The long version is
``benchmarks/kill9_soak.py``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.support.kill9 import cli, killed, one_run, outcomes, pending_phase, soak


def test_ten_kills_lose_no_outcome_and_every_deployment_resumes(tmp_path: Path) -> None:
    report = soak(tmp_path, 10, seed=7)
    explain = "\n".join(f"{r}" for r in report.runs)
    assert report.killed >= 6, explain  # the kills land inside the deployments
    assert report.resumable == 10, explain
    assert report.lost == 0, explain
    assert report.integrity_ok == 10, explain


def test_killed_while_the_strategy_acts_the_attempt_is_settled_unknown(tmp_path: Path) -> None:
    run = one_run(tmp_path / "run", 0.0, when=pending_phase("applying"))
    assert run.killed and run.resumable and run.lost == 0, run
    # the interrupted attempt is unknown; the resumed run's own attempt fixed the step
    assert outcomes(tmp_path / "run")[0] == "unknown", outcomes(tmp_path / "run")
    assert "pending" not in outcomes(tmp_path / "run")


def test_killed_after_the_strategy_acted_the_resume_decides_it(tmp_path: Path) -> None:
    run = one_run(tmp_path / "run", 0.0, when=pending_phase("applied"))
    assert run.killed and run.resumable and run.lost == 0, run
    assert outcomes(tmp_path / "run") == ["recovered"]  # one attempt, decided by the resumed re-run


def test_a_pending_attempt_is_decided_in_place_never_duplicated(tmp_path: Path) -> None:
    from aideploy.knowledge.store import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb.sqlite") as kb:
        kb.start_deployment("d1", None, "h", "p")
        args = ("d1", "E: boom", "network", "retry_with_backoff", "s")
        kb.record_attempt(*args, "pending", 0.0, attempt_id="a1")
        kb.record_attempt(*args, "pending", 0.0, attempt_id="a2")
        assert kb.pending_attempts("d1") == ["a1", "a2"]
        kb.record_attempt(*args, "recovered", 1.5, attempt_id="a1")
        assert kb.pending_attempts() == ["a2"]
        assert kb.settle_pending("d1") == 1
        assert [o.outcome for o in kb.past_outcomes()] == ["recovered", "unknown"]
        assert kb.counts()["attempts"] == 2
        [stats] = kb.strategy_stats()
        assert stats.attempts == 2 and stats.success_rate == 1.0  # unknown is not a failure


def test_a_completed_deployment_leaves_no_attempt_pending(tmp_path: Path) -> None:
    from aideploy.core.events import DeploymentEnded
    from aideploy.knowledge.recorder import KnowledgeRecorder
    from aideploy.knowledge.store import KnowledgeBase

    with KnowledgeBase.open(tmp_path / "kb.sqlite") as kb:
        kb.start_deployment("d1", None, "h", "p")
        kb.record_attempt(
            "d1", "E: x", "network", "apt_update", "s", "pending", 0.0, attempt_id="a"
        )
        recorder = KnowledgeRecorder(kb)
        recorder.publish(DeploymentEnded("d1", "failed", "interrupted"))
        assert kb.pending_attempts("d1") == ["a"]  # a resume may still decide it
        recorder.publish(DeploymentEnded("d1", "completed"))
        assert kb.pending_attempts() == []
        assert [o.outcome for o in kb.past_outcomes()] == ["unknown"]


def test_abandoning_a_killed_deployment_leaves_no_attempt_pending(tmp_path: Path) -> None:
    work = tmp_path / "run"
    deployment_id = killed(work, pending_phase("applying"))
    # killed while the strategy acted: the attempt is pending in the state, and in the knowledge
    # base too unless the kill came before that write
    assert outcomes(work) in (["pending"], [])
    proc = cli(work, "abandon", deployment_id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 recovery attempt(s) it left undecided kept as unknown" in proc.stdout
    assert outcomes(work) == ["unknown"]
    conn = sqlite3.connect(work / "kb.sqlite")
    try:
        (status,) = conn.execute(
            "SELECT status FROM deployments WHERE id = ?", (deployment_id,)
        ).fetchone()
    finally:
        conn.close()
    assert status == "abandoned"
