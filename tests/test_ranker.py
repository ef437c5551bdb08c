from __future__ import annotations

import dataclasses
import stat
import time
from pathlib import Path

import pytest

from aideploy.core.recovery import Failure, Outcome, Risk
from aideploy.core.result import Result
from aideploy.engine.recovery import RecoveryAdvisor
from aideploy.knowledge.classes import risk_of
from aideploy.knowledge.history import ListHistory, PastOutcome
from aideploy.knowledge.ranker import CandidateDetail, Ranker
from aideploy.knowledge.ranker.evidence import Evidence, EvidenceStore
from aideploy.knowledge.ranker.order import order_score
from aideploy.knowledge.ranker.score import MANUAL
from aideploy.knowledge.rules import ErrorPattern, RuleSet, UnsafePatternError
from aideploy.knowledge.signature import signature_of

APT_LOCK = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt)"
PORT = "nginx: [emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)"
PERM = "PermissionError: [Errno 13] Permission denied: '/srv/app/static/admin'"


def _result(text: str) -> Result:
    return Result(command="x", host="h", exit_code=1, stdout="", stderr=text, duration=0.1)


@pytest.fixture
def ranker() -> Ranker:
    return Ranker(ListHistory(), explore=0.0)


def test_is_a_recovery_advisor(ranker: Ranker) -> None:
    advisor: RecoveryAdvisor = ranker
    failure = advisor.detect("install", _result(APT_LOCK))
    assert failure.error_class == "apt_lock"
    assert failure.signature == signature_of(APT_LOCK)
    assert failure.details.get("path") == "/var/lib/dpkg/lock-frontend"


def test_cold_start_rules_decide(ranker: Ranker) -> None:
    failure = ranker.detect("install", _result(APT_LOCK))
    cands = ranker.candidates(failure)
    assert cands[0].strategy == "wait_for_apt_lock"
    assert cands[0].decided_by == "rule"
    assert "rule 'apt_lock'" in cands[0].why
    assert "manual_intervention" in [c.strategy for c in cands]


def test_text_no_rule_matches_gets_a_class(ranker: Ranker) -> None:
    text = "the frobnicator exploded while reticulating splines"
    failure = ranker.detect("build", _result(text))
    assert failure.error_class
    assert ranker.candidates(failure)


def test_exclude_is_not_proposed_first(ranker: Ranker) -> None:
    failure = ranker.detect("install", _result(APT_LOCK))
    cands = ranker.candidates(failure, exclude={"wait_for_apt_lock"})
    names = [c.strategy for c in cands]
    assert names[0] != "wait_for_apt_lock"
    # demoted, not dropped: after the fresh automatic candidates, before the manual fallback
    assert "wait_for_apt_lock" in names
    assert names.index("wait_for_apt_lock") < names.index("manual_intervention")
    demoted = cands[names.index("wait_for_apt_lock")]
    assert "failed once for this error in this deployment" in demoted.why
    fresh = [n for n in names[: names.index("wait_for_apt_lock")]]
    assert all(n != "manual_intervention" for n in fresh)
    # failed twice here: after manual intervention
    again = [c.strategy for c in ranker.candidates(failure, exclude=["wait_for_apt_lock"] * 2)]
    assert again.index("wait_for_apt_lock") > again.index("manual_intervention")


def test_right_fix_that_failed_by_chance_is_tried_again(ranker: Ranker) -> None:
    failure = ranker.detect("install", _result(APT_LOCK))
    for _ in range(4):
        ranker.record(failure, "wait_for_apt_lock", Outcome.RECOVERED, duration=1, decided_by="x")
    assert ranker.candidates(failure)[0].strategy == "wait_for_apt_lock"
    # it fails once (noise): still far likelier to be the fix than any other, it is retried
    tried = ["wait_for_apt_lock"]
    ranker.record(failure, "wait_for_apt_lock", Outcome.FAILED, duration=1, decided_by="x")
    assert ranker.candidates(failure, exclude=tried)[0].strategy == "wait_for_apt_lock"
    # it fails again: another strategy goes first
    tried.append("wait_for_apt_lock")
    ranker.record(failure, "wait_for_apt_lock", Outcome.FAILED, duration=1, decided_by="x")
    assert ranker.candidates(failure, exclude=tried)[0].strategy != "wait_for_apt_lock"


def test_a_fix_that_worked_many_times_then_fails_twice_is_no_longer_first(
    ranker: Ranker,
) -> None:
    failure = ranker.detect("install", _result(APT_LOCK))

    def record(strategy: str, ok: bool) -> None:
        outcome = Outcome.RECOVERED if ok else Outcome.FAILED
        ranker.record(failure, strategy, outcome, duration=1, decided_by="x")

    for _ in range(6):
        record("wait_for_apt_lock", True)
    # one failure is taken for chance: still first at the next encounter
    record("wait_for_apt_lock", False)
    record("dpkg_repair", False)
    assert ranker.candidates(failure)[0].strategy == "wait_for_apt_lock"
    # a second failure since it last worked: the fix has likely changed
    record("wait_for_apt_lock", False)
    cands = ranker.candidates(failure)
    assert cands[0].strategy != "wait_for_apt_lock"
    demoted = next(c for c in cands if c.strategy == "wait_for_apt_lock")
    assert "failed 2.0 here since it last recovered this error: 74% chance" in demoted.why
    # whatever works now starts a new record
    record("dpkg_repair", True)
    assert ranker.candidates(failure)[0].strategy == "dpkg_repair"


def test_manual_is_held_back_until_automatic_strategies_keep_failing(ranker: Ranker) -> None:
    """The "stuck" condition is a typed field of manual intervention's detail, set where it is
    computed: three automatic strategies failing on this signature in this step."""
    failure = ranker.detect("install", _result(APT_LOCK))

    def details(step: str = "install") -> list[CandidateDetail]:
        return ranker.explain(APT_LOCK, step=step).candidates

    def manual(step: str = "install") -> CandidateDetail:
        return next(d for d in details(step) if d.strategy == MANUAL)

    assert not manual().stuck
    assert order_score(manual()) < manual().score  # held back
    for strategy in ("wait_for_apt_lock", "dpkg_repair", "retry_with_backoff"):
        assert not manual().stuck
        ranker.record(failure, strategy, Outcome.FAILED, duration=1, decided_by="x")
    d = manual()
    assert d.stuck and order_score(d) == d.score
    assert d.prior_source == "automatic strategies keep failing on this signature in step install"
    # no longer held back, but never before an automatic candidate not yet tried in this
    # deployment: it comes right after the first one
    order = [c.strategy for c in ranker.candidates(failure)]
    assert order[0] != MANUAL and order[1] == MANUAL
    # only manual intervention is flagged, and only in the step where they keep failing
    assert not any(d.stuck for d in details() if d.strategy != MANUAL)
    assert not manual("build").stuck


@pytest.mark.parametrize("name", ["frobnicator", "frobnicator keep failing"])
def test_a_rule_that_proposes_manual_intervention_is_held_back_whatever_its_name(
    name: str,
) -> None:
    """Manual intervention proposed by a rule is ordered by a quarter of its score, however the
    rule is named (the stuck condition used to be read from the prior's text)."""
    rules = RuleSet()
    rules.add(ErrorPattern(name, r"frobnicator exploded", "unknown", MANUAL))
    r = Ranker(ListHistory(), rules, explore=0.0)
    cands = r.candidates(r.detect("build", _result("the frobnicator exploded")))
    assert [c.strategy for c in cands][:2] == ["retry_with_backoff", MANUAL]
    assert cands[1].score > cands[0].score


def test_class_votes_count_each_signature_and_step_once() -> None:
    """The fix of a (signature, step) pair votes once for its class in every step and once in
    its own step, whatever the step is called; a failure since it last worked withdraws it."""
    store = EvidenceStore()

    def learn(sig: str, step: str, strategy: str, outcome: str) -> None:
        store.learn(PastOutcome(sig, "apt_lock", strategy, outcome, context={"step": step}))

    for step in ("install", "*"):
        learn("sig a", step, "wait_for_apt_lock", "recovered")
        learn("sig a", step, "wait_for_apt_lock", "recovered")
    learn("sig b", "install", "dpkg_repair", "recovered")
    assert dict(store.votes("apt_lock").by_strategy) == {"wait_for_apt_lock": 2, "dpkg_repair": 1}
    assert store.votes("apt_lock").total == 3
    assert dict(store.votes("apt_lock", "*").by_strategy) == {"wait_for_apt_lock": 1}
    assert store.votes("apt_lock", "install").total == 2
    learn("sig b", "install", "dpkg_repair", "failed")
    assert store.votes("apt_lock", "install").by_strategy.get("dpkg_repair", 0.0) == 0.0
    here = store.signature("sig b", "install")
    assert here.here["dpkg_repair"] == Evidence(0.8, 1.0)
    assert here.last_fix is not None and here.last_fix.failed == 1.0
    assert store.on_class("apt_lock")["dpkg_repair"].failed == 1.0


def test_record_changes_next_ranking(ranker: Ranker) -> None:
    failure = ranker.detect("collectstatic", _result(PERM))
    first = ranker.candidates(failure)[0].strategy
    ranker.record(failure, first, Outcome.FAILED, duration=1, decided_by="rule")
    ranker.record(failure, "npm_user_prefix", Outcome.RECOVERED, duration=1, decided_by="rule")
    again = ranker.candidates(ranker.detect("collectstatic", _result(PERM)))
    assert again[0].strategy == "npm_user_prefix"
    assert again[0].decided_by == "history"
    assert "same signature: 1.0 recovered" in again[0].why


def test_history_and_import_weights() -> None:
    sig = signature_of(PORT)

    def outcomes(weight: float, n: int) -> list[PastOutcome]:
        return [
            PastOutcome(
                sig,
                "port_in_use",
                "restart_service",
                "recovered",
                weight=weight,
                context={"step": "web"},
            )
            for _ in range(n)
        ] + [
            PastOutcome(
                sig, "port_in_use", "free_port", "failed", weight=weight, context={"step": "web"}
            )
            for _ in range(n)
        ]

    local = Ranker(ListHistory(outcomes(1.0, 3)), explore=0.0)
    imported = Ranker(ListHistory(outcomes(0.02, 3)), explore=0.0)
    f = local.detect("web", _result(PORT))
    assert local.candidates(f)[0].strategy == "restart_service"
    # barely-trusted imported outcomes do not overturn the rule prior
    assert imported.candidates(imported.detect("web", _result(PORT)))[0].strategy == "free_port"


def test_fuzzy_neighbours_carry_evidence(ranker: Ranker) -> None:
    a = "Error: Cannot find module 'left-pad' required by /srv/app/build/webpack.config.js"
    b = "Error: Cannot find module 'left-pad' required by /srv/app/build/webpack.config.cjs"
    assert signature_of(a) != signature_of(b)
    fa = ranker.detect("build", _result(a))
    ranker.record(fa, "install_missing_command", Outcome.RECOVERED, duration=1, decided_by="x")
    e = ranker.explain(b, step="build")
    sims = [n.similarity for n in e.neighbours]
    assert sims and 85 <= sims[0] < 100
    best = next(c for c in e.candidates if c.strategy == "install_missing_command")
    assert best.neighbour_recovered > 0
    assert "sim " in best.why


def test_explanation_names_rule_neighbours_model() -> None:
    sig = signature_of(APT_LOCK)
    history = ListHistory(
        [
            PastOutcome(sig, "apt_lock", s, o, context={"step": "install"})
            for s, o in [("wait_for_apt_lock", "recovered")] * 8 + [("dpkg_repair", "failed")] * 4
        ]
    )
    r = Ranker(history, explore=0.0)
    e = r.explain(APT_LOCK, step="install")
    assert e.error_class == "apt_lock"
    assert e.rule_hits[0].rule == "apt_lock"
    assert e.neighbours[0].similarity == 100.0
    top = e.candidates[0]
    assert top.strategy == "wait_for_apt_lock"
    assert top.model_probability is not None
    assert "rule 'apt_lock'" in top.why
    assert "same signature" in top.why
    assert "model p(recovered)" in top.why
    assert len(e.class_scores) >= 3


def test_the_model_predicts_under_the_tool_it_learnt_from() -> None:
    """The same error from two tools (a custom rule's ``tool`` group): the model is asked under
    the tool of the failure at hand, as it learnt, so each tool gets its own probability."""
    r = Ranker(ListHistory(), explore=0.0, refit_every=0)
    base = r.detect("build", _result("the frobnicator exploded"))
    npm = dataclasses.replace(base, details={**base.details, "tool": "npm"})
    pip = dataclasses.replace(base, details={**base.details, "tool": "pip"})
    for _ in range(15):
        r.record(npm, "retry_with_backoff", Outcome.RECOVERED, duration=1.0, decided_by="rule")
        r.record(pip, "retry_with_backoff", Outcome.FAILED, duration=1.0, decided_by="rule")
    r.refit()

    def model_p(failure: Failure) -> float:
        why = next(c.why for c in r.candidates(failure) if c.strategy == "retry_with_backoff")
        return float(why.split("model p(recovered)=")[1].split(";")[0])

    assert model_p(npm) > 0.6 > 0.4 > model_p(pip)


def test_follows_when_the_winning_strategy_changes() -> None:
    """A small stream: restart_service fixes the error, then stops working; free_port does."""
    r = Ranker(ListHistory(), explore=0.0, refit_every=5)
    winner = "restart_service"
    first_choices: list[str] = []
    for i in range(40):
        if i == 20:
            winner = "free_port"
        failure = r.detect("web", _result(PORT.replace("80", str(8000 + i))))
        tried: list[str] = []
        for _ in range(5):
            choice = r.candidates(failure, exclude=tried)[0].strategy
            if not tried:
                first_choices.append(choice)
            ok = choice == winner
            r.record(
                failure,
                choice,
                Outcome.RECOVERED if ok else Outcome.FAILED,
                duration=1,
                decided_by="x",
            )
            if ok:
                break
            tried.append(choice)
    # learned restart_service in the first phase...
    assert first_choices[10:20] == ["restart_service"] * 10
    # ...and follows the change within a few outcomes
    assert first_choices[24:40] == ["free_port"] * 16


def test_exploration_never_picks_high_risk() -> None:
    r = Ranker(ListHistory(), explore=0.2, seed=3)
    texts = [
        PORT,
        APT_LOCK,
        PERM,
        "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        "Temporary failure in name resolution",
    ]
    explored = 0
    for i in range(400):
        text = texts[i % len(texts)] + f"\nrun {i}" * (i % 7)
        failure = r.detect(f"step{i}", _result(text))
        for c in r.candidates(failure):
            if c.decided_by == "explore":
                explored += 1
                assert risk_of(c.strategy) is not Risk.HIGH
    assert explored <= 400 * 0.2 + 10


def test_hostile_custom_pattern_cannot_hang_ranking() -> None:
    """A custom pattern runs on RE2: ``(a+)+$``, exponential for a backtracking matcher, is
    accepted and linear; what RE2 cannot run (a backreference) is refused."""
    rules = RuleSet()
    with pytest.raises(UnsafePatternError, match="backreference"):
        rules.add(ErrorPattern("twice", r"(a+)\1", "unknown", "retry_with_backoff"))
    rules.add(ErrorPattern("evil", r"(a+)+$", "unknown", "retry_with_backoff"))
    r = Ranker(ListHistory(), rules, explore=0.0)
    start = time.perf_counter()
    r.candidates(r.detect("x", _result("a" * 40_000 + "b")))
    assert time.perf_counter() - start < 2.0


def test_refit_is_fast_enough() -> None:
    outcomes = [
        PastOutcome(
            f"E: thing {i % 2000} broke at <path>/f{i % 50}",
            "unknown",
            ["retry_with_backoff", "manual_intervention"][i % 2],
            "recovered" if i % 3 else "failed",
            context={"step": f"s{i % 4}"},
        )
        for i in range(20_000)
    ]
    r = Ranker(ListHistory(outcomes), explore=0.0)
    start = time.perf_counter()
    r.refit()
    assert time.perf_counter() - start < 2.0
    assert r.model.fitted


def test_classifier_cache_round_trip_and_refusals(tmp_path: Path) -> None:
    from aideploy.knowledge.classifier import TextClassifier, cache_key, load_cached, store_cached

    texts = ["E: Could not get lock /var/lib/dpkg/lock", "bind() failed (98: Address in use)"]
    labels = ["apt_lock", "port_in_use"]
    clf = TextClassifier().fit(texts, labels)
    key = cache_key(texts, labels)
    assert key != cache_key(texts, ["apt_lock", "disk_full"])
    directory = tmp_path / "cache" / "classifier"
    assert load_cached(directory, key) is None
    store_cached(directory, key, clf)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (cached_file,) = directory.iterdir()  # no temp file left behind
    assert stat.S_IMODE(cached_file.stat().st_mode) == 0o600
    loaded = load_cached(directory, key)
    assert loaded is not None and loaded.proba(texts[0]) == clf.proba(texts[0])
    # a file others could have written is not read
    cached_file.chmod(0o620)
    assert load_cached(directory, key) is None
    cached_file.chmod(0o600)
    # nor one in a directory others can write
    directory.chmod(0o770)
    assert load_cached(directory, key) is None
    directory.chmod(0o700)
    # nor a symlink to a file elsewhere
    target = tmp_path / "elsewhere.npz"
    cached_file.rename(target)
    cached_file.symlink_to(target)
    assert load_cached(directory, key) is None
    # a damaged file is ignored (retrained by the caller)
    cached_file.unlink()
    cached_file.write_bytes(b"not an npz archive")
    cached_file.chmod(0o600)
    assert load_cached(directory, key) is None
