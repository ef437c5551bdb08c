"""The outcome model generalizes across causes that share a rule, a named detail or a tool, and
the fuzzy search of one cause's neighbours reads only that cause's signatures."""

from __future__ import annotations

from aideploy.knowledge.history import PastOutcome
from aideploy.knowledge.outcome_model import OutcomeModel, cause_parts
from aideploy.knowledge.ranker.evidence import FUZZY_LIMIT, FUZZY_SCAN, EvidenceStore


def test_cause_parts_are_kind_value_pairs_not_repeated() -> None:
    assert cause_parts("") == ()
    assert cause_parts("rule=port_in_use,service=nginx,tool=npm", (("tool", "npm"),)) == (
        ("rule", "port_in_use"),
        ("service", "nginx"),
    )
    assert cause_parts("rule=a,rule=b,junk,kind=") == (("rule", "a"), ("rule", "b"))


def _outcomes(signature: str, strategy: str, ok: bool, n: int) -> list[PastOutcome]:
    outcome = "recovered" if ok else "failed"
    return [
        PastOutcome(signature, "service_failed", strategy, outcome, 1.0, {"step": "web"})
        for _ in range(n)
    ]


def test_what_fixed_causes_sharing_a_rule_carries_to_a_new_one() -> None:
    """Signatures with no word in common: only the cause's rule id links the new one to the
    ones seen, under which restart_service worked and check_config failed."""
    model = OutcomeModel()
    seen = [("alpha one", "rule=unit_failed,service=a"), ("beta two", "rule=unit_failed,service=b")]
    other = [("gamma three", "rule=bad_config"), ("delta four", "rule=bad_config")]
    for sig, cause in seen:
        for o in _outcomes(sig, "restart_service", True, 10) + _outcomes(
            sig, "check_config", False, 10
        ):
            model.add(o, cause)
    for sig, cause in other:
        for o in _outcomes(sig, "restart_service", False, 10) + _outcomes(
            sig, "check_config", True, 10
        ):
            model.add(o, cause)
    model.refit()
    strategies = ["restart_service", "check_config"]
    shared = model.predict(
        "omega nine", "service_failed", strategies, {"step": "web"}, "rule=unit_failed,service=c"
    )
    unlinked = model.predict("omega nine", "service_failed", strategies, {"step": "web"}, "")
    assert shared["restart_service"] > shared["check_config"]
    assert shared["restart_service"] - shared["check_config"] > (
        unlinked["restart_service"] - unlinked["check_config"]
    )


def test_neighbours_of_a_cause_are_found_among_many_closer_signatures_of_others() -> None:
    """More than FUZZY_LIMIT near-identical signatures of other causes do not hide the
    neighbours of this failure's own cause."""
    causes = {"unit failed: webapp-x": "mine", "unit failed: webapp-y": "mine"}
    for i in range(FUZZY_LIMIT * 3):
        causes[f"unit failed: webapp-z{i}"] = "other"
    store = EvidenceStore(lambda sig, ctx: causes.get(sig, "mine"))
    for sig in causes:
        store.learn(
            PastOutcome(sig, "service_failed", "restart_service", "recovered", 1.0, {"step": "web"})
        )
    found = store.neighbours("unit failed: webapp-z", ["service_failed"], "web", "mine")
    assert {n.signature for n in found} == {"unit failed: webapp-x", "unit failed: webapp-y"}
    everyone = store.neighbours("unit failed: webapp-z", ["service_failed"], "web")
    assert len(everyone) == FUZZY_LIMIT


def test_the_search_reads_a_bounded_number_of_a_causes_signatures() -> None:
    """A cause met in more than FUZZY_SCAN variants: only its latest ones are searched, so an old
    variant, however close, is not a neighbour any more (its outcomes still count as votes)."""
    store = EvidenceStore(lambda sig, ctx: "one cause")
    old = "unit failed: webapp-z"
    store.learn(PastOutcome(old, "service_failed", "restart_service", "recovered", 1.0, {}))
    for i in range(FUZZY_SCAN):
        sig = f"unit failed: webapp-{i:03d}"
        store.learn(PastOutcome(sig, "service_failed", "restart_service", "recovered", 1.0, {}))
    found = store.neighbours("unit failed: webapp-y", ["service_failed"], "", "one cause")
    assert found and old not in {n.signature for n in found}
    assert old in {
        n.signature for n in store.neighbours("unit failed: webapp-y", ["service_failed"])
    }
