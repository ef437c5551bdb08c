"""The evidence hierarchy: a strategy proven on one cause does not take over another cause of
the same class, and import weights count smoothly (a weight of w is w of an observation)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from aideploy.core.recovery import Outcome
from aideploy.knowledge.history import ListHistory, PastOutcome
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.ranker.evidence import EvidenceStore
from aideploy.knowledge.signature import signature_of

# (class, cause A, step A, cause B of the same class, step B)
PROBES = [
    (
        "disk_full",
        "npm ERR! code ENOSPC\nnpm ERR! syscall write\nnpm ERR! errno -28\n"
        "npm ERR! nospc ENOSPC: no space left on device, write",
        "build_frontend",
        'ERROR: could not extend file "base/16384/2619": No space left on device\n'
        "HINT: Check free disk space.",
        "setup_backend",
    ),
    (
        "permission_denied",
        "npm ERR! Error: EACCES: permission denied, mkdir '/usr/lib/node_modules/left-pad'",
        "build_frontend",
        "bash: ./start.sh: Permission denied",
        "start_app",
    ),
    (
        "service_failed",
        "Job for nginx.service failed because the control process exited with error code.\n"
        'See "systemctl status nginx.service" and "journalctl -xe" for details.',
        "start_app",
        "Job for gunicorn.service failed because the control process exited with error code.\n"
        'See "systemctl status gunicorn.service" and "journalctl -xe" for details.',
        "start_app",
    ),
]


def _history(text: str, error_class: str, strategy: str, step: str, n: int, w: float) -> list:
    sig = signature_of(text)
    return [
        PastOutcome(sig, error_class, strategy, "recovered", weight=w, context={"step": step})
        for _ in range(n)
    ]


@pytest.mark.parametrize(("error_class", "a", "step_a", "b", "step_b"), PROBES)
def test_a_fix_proven_on_one_cause_does_not_take_over_another(
    error_class: str, a: str, step_a: str, b: str, step_b: str
) -> None:
    fresh = Ranker(ListHistory(), explore=0.0)
    fb = fresh.failure_of(b, step_b)
    assert fb.error_class == error_class
    assert signature_of(a) != signature_of(b)
    first = fresh.candidates(fb)[0].strategy
    rivals = [c.strategy for c in fresh.candidates(fb)[1:] if c.strategy != "manual_intervention"]
    assert rivals, "each probe has an alternative to over-generalize to"
    for strategy in rivals:
        for n in (3, 6):
            taught = Ranker(
                ListHistory(_history(a, error_class, strategy, step_a, n, 1.0)), explore=0.0
            )
            # it is the fix of cause A now...
            assert taught.candidates(taught.failure_of(a, step_a))[0].strategy == strategy
            # ...and not of cause B, whose rules and detail point elsewhere
            got = taught.candidates(taught.failure_of(b, step_b))
            assert got[0].strategy == first, (strategy, n, [c.strategy for c in got[:3]])
            assert next(c for c in got if c.strategy == strategy).score < got[0].score


def test_explain_names_the_level_of_each_candidate() -> None:
    _, a, step_a, b, step_b = PROBES[1]
    r = Ranker(ListHistory(_history(a, "permission_denied", "npm_user_prefix", step_a, 3, 1.0)))
    levels = {c.strategy: c.level for c in r.explain(a, step_a).candidates}
    assert levels["npm_user_prefix"] == "signature"
    levels = {c.strategy: c.level for c in r.explain(b, step_b).candidates}
    assert levels["npm_user_prefix"] == "class"
    assert levels["make_executable"] == "rule"
    assert "level class" in next(
        c.why for c in r.explain(b, step_b).candidates if c.strategy == "npm_user_prefix"
    )


PORT = "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)"


def _port_history(w: float) -> ListHistory:
    sig = signature_of(PORT)
    ctx = {"step": "web"}
    return ListHistory(
        [PastOutcome(sig, "port_in_use", "restart_service", "recovered", w, ctx)] * 3
        + [PastOutcome(sig, "port_in_use", "free_port", "failed", w, ctx)] * 3
    )


def test_import_weight_moves_rankings_smoothly() -> None:
    scores = []
    for w in (0.0, 0.3, 0.49, 0.5, 1.0):
        r = Ranker(_port_history(w), explore=0.0)
        by = {c.strategy: c.score for c in r.candidates(r.failure_of(PORT, "web"))}
        scores.append((w, by["restart_service"], by["free_port"]))
    for (_, up0, down0), (_, up1, down1) in pairwise(scores):
        assert up1 > up0 and down1 < down0, scores
    # no threshold: 0.49 and 0.5 are nearly the same evidence
    (_, up49, down49), (_, up50, down50) = scores[2], scores[3]
    assert abs(up50 - up49) < 0.02 and abs(down50 - down49) < 0.02, scores


def test_a_weight_counts_that_share_of_an_observation() -> None:
    for w in (0.3, 0.49, 0.5, 1.0):
        store = EvidenceStore()
        store.learn(PastOutcome("sig", "apt_lock", "dpkg_repair", "recovered", w, {"step": "s"}))
        assert store.votes("apt_lock").by_strategy["dpkg_repair"] == pytest.approx(w)
        assert store.signature("sig", "s").here["dpkg_repair"].recovered == pytest.approx(w)
        fix = store.signature("sig", "s").last_fix
        assert fix is not None and fix.strategy == "dpkg_repair" and fix.belief == pytest.approx(w)


@pytest.mark.parametrize("w", [0.3, 0.49, 0.5, 1.0])
def test_no_weight_takes_over_another_cause(w: float) -> None:
    _, a, step_a, b, step_b = PROBES[1]
    fresh = Ranker(ListHistory(), explore=0.0)
    first = fresh.candidates(fresh.failure_of(b, step_b))[0].strategy
    taught = Ranker(
        ListHistory(_history(a, "permission_denied", "npm_user_prefix", step_a, 10, w)),
        explore=0.0,
    )
    assert taught.candidates(taught.failure_of(b, step_b))[0].strategy == first


def test_a_well_known_fix_that_failed_by_chance_is_retried_at_once() -> None:
    ranker = Ranker(ListHistory(), explore=0.0)
    failure = ranker.failure_of(PORT, "web")
    cold = [c.strategy for c in ranker.candidates(failure)]
    # a cold favourite that fails is not tried again straight away
    ranker.record(failure, cold[0], Outcome.FAILED, duration=1, decided_by="rule")
    assert ranker.candidates(failure, exclude=[cold[0]])[0].strategy != cold[0]
    known = Ranker(ListHistory(), explore=0.0)
    for _ in range(5):
        known.record(failure, "restart_service", Outcome.RECOVERED, duration=1, decided_by="x")
    known.record(failure, "restart_service", Outcome.FAILED, duration=1, decided_by="x")
    again = known.candidates(failure, exclude=["restart_service"])
    assert again[0].strategy == "restart_service"
    assert "failed once for this error in this deployment" in again[0].why


FIXES = ("restart_service", "start_service", "retry_with_backoff")


def _steps_history(agree: bool) -> ListHistory:
    """Twelve errors fixed in one step, each also in a second step: by the same strategy, or
    by another one (every strategy as often as the others in both steps)."""
    outcomes = []
    for i in range(12):
        sig = f"error: unit worker{i} failed to start (code {i})"
        first = FIXES[i % 3]
        second = first if agree else FIXES[(i + 1) % 3]
        for step, fix in (("setup_backend", first), ("start_app", second)):
            outcomes.append(
                PastOutcome(sig, "service_failed", fix, "recovered", context={"step": step})
            )
    return ListHistory(outcomes)


def _rise_in_other_step(agree: bool) -> tuple[float, str]:
    """How much a recovery in setup_backend raises that strategy in start_app; what is first."""
    ranker = Ranker(_steps_history(agree), explore=0.0)
    text = "Job for mystery.service failed because the control process exited with error code."

    def score(strategy: str) -> float:
        return next(d.score for d in ranker.rank(text, "start_app")[1] if d.strategy == strategy)

    before = score("start_service")
    failure = ranker.failure_of(text, "setup_backend")
    ranker.record(failure, "start_service", Outcome.RECOVERED, duration=1, decided_by="x")
    first = ranker.candidates(ranker.failure_of(text, "start_app"))[0].strategy
    return score("start_service") - before, first


def test_what_outcomes_in_other_steps_are_worth_is_learnt() -> None:
    carried, first = _rise_in_other_step(agree=True)
    assert first == "start_service"
    # where the fixes of the same errors differed between steps, such an outcome counts little
    not_carried, _ = _rise_in_other_step(agree=False)
    assert 0.0 <= not_carried < carried / 3
