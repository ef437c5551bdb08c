"""The learning recovery advisor: rules + fuzzy neighbours + a logistic model.

A failure goes through four stages, one module each:

* :mod:`.detect` - the error text's signature, rule hits and error class scores (the regex
  rules and a text classifier trained on the bundled corpus' train split and synthetic
  examples);
* :mod:`.evidence` - what the recorded outcomes say, by level, most specific first: this very
  signature (forgetting tallies per step, and the belief about which strategy fixes it there),
  fuzzy neighbours of the same cause (rapidfuzz over masked signatures), the failures of the same
  class, step and cause (the rules that match, the service, command or package named, the tool)
  and the class alone - one vote per (signature, step). Every count is weighted: an imported
  outcome of weight w counts w of an observation. A change of fix seen on one variant of a cause
  discounts the older record of all of them;
* :mod:`.score` - each candidate's chance of being the fix, built level by level, broadest
  first, each Beta-smoothed towards the one before it (hierarchical shrinkage):

  * the *prior*: the strongest rule (or class default) that proposes it;
  * the *class*: its share of the class's (signature, step) votes, each vote of another cause
    counting ``CLASS_DISTANCE`` of an observation - so a strategy proven on another cause of
    the class does not outrank the strategy a rule that fits this failure proposes;
  * the *cause*: its share of the votes of the same class, step and cause (``CAUSE_DISTANCE``);
  * this signature in other steps;
  * the *model*: P(recovered) from a logistic regression over (signature tokens, strategy,
    class, context, the parts of the cause key), weighing most on a cause met for the first
    time and less as direct evidence grows;
  * last, the outcomes on this signature in this step and on its fuzzy neighbours (weighted
    by similarity): one strategy is taken to be the fix, so every strategy's successes and
    failures move probability between the candidates (a favourite that keeps failing hands its
    share to the untried ones), and failures of the believed fix raise the chance that its fix
    has changed, after which its older record no longer counts;

* :mod:`.order` - the order the executor tries them in: strategies already failed in this
  deployment demoted (retried at once only when still far likelier than any untried one),
  manual intervention held back and never first while an automatic candidate is untried, now
  and then an untried alternative explored first.

Every candidate carries a readable ``why`` (:mod:`.explain`); :meth:`Ranker.explain` returns
it all structured.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime

from aideploy.core.recovery import Candidate, Failure, Outcome, outcome_context
from aideploy.core.result import Result
from aideploy.knowledge.classifier import TextClassifier
from aideploy.knowledge.corpus import Example
from aideploy.knowledge.history import History, PastOutcome
from aideploy.knowledge.outcome_model import OutcomeModel
from aideploy.knowledge.ranker.detect import (
    Analysis,
    Detector,
    bundled_classifier,
    classifier_cache_dir,
    failure_from,
    text_of,
    text_result,
    train_classifier,
)
from aideploy.knowledge.ranker.evidence import Evidence, EvidenceStore, Neighbour
from aideploy.knowledge.ranker.explain import Explanation, described, explanation
from aideploy.knowledge.ranker.order import Explorer, order_candidates
from aideploy.knowledge.ranker.score import (
    ALL_PARTS,
    CandidateDetail,
    Parts,
    Scored,
    score_candidates,
)
from aideploy.knowledge.rules import RuleSet

# the benchmarks' name for it
_train_classifier = train_classifier

__all__ = [
    "Analysis",
    "CandidateDetail",
    "Evidence",
    "Explanation",
    "Neighbour",
    "Parts",
    "Ranker",
    "classifier_cache_dir",
    "train_classifier",
]


class Ranker:
    """RecoveryAdvisor that learns from every recorded outcome."""

    def __init__(
        self,
        history: History,
        rules: RuleSet | None = None,
        *,
        corpus: Sequence[Example] | None = None,
        refit_every: int = 50,
        explore: float = 0.05,
        seed: int = 0,
        parts: Parts = ALL_PARTS,
    ) -> None:
        self.rules = rules if rules is not None else RuleSet()
        self.classifier: TextClassifier = (
            bundled_classifier() if corpus is None else train_classifier(list(corpus))
        )
        self.refit_every = refit_every
        self.parts = parts
        self.model = OutcomeModel()
        self._detector = Detector(self.rules, self.classifier)
        self._evidence = EvidenceStore(self._detector.cause)
        self._explorer = Explorer(explore, seed)
        self._since_fit = 0
        past = sorted(history.past_outcomes(), key=lambda o: o.at.timestamp() if o.at else 0.0)
        learn, add, cause = self._evidence.learn, self.model.add, self._evidence.cause_learnt
        for o in past:  # one pass: tallies, fuzzy index and the model's aggregate
            learn(o)
            add(o, cause(o))
        self.refit()

    @property
    def explore(self) -> float:
        """How often an untried alternative may be put first (0 .. 0.2)."""
        return self._explorer.rate

    # --- learning -----------------------------------------------------------------------

    def refit(self) -> None:
        """Fit the outcome model on every outcome seen so far."""
        self.model.refit()
        self._since_fit = 0

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
        past = PastOutcome(
            signature=failure.signature,
            error_class=failure.error_class,
            strategy=strategy,
            outcome=outcome.value,
            weight=1.0,
            context=outcome_context(failure),
            at=datetime.now(UTC),
            deployment_id=deployment_id,
        )
        self._evidence.learn(past)
        self.model.add(past, self._evidence.cause_learnt(past))
        self._since_fit += 1
        if self.refit_every and self._since_fit >= self.refit_every:
            self.refit()

    # --- detection ----------------------------------------------------------------------

    def analyze_many(self, texts: Sequence[str]) -> list[Analysis]:
        """Signature, rule hits, class scores and details of many texts (batched classifier)."""
        return self._detector.analyze_many(texts)

    def analyze(self, text: str) -> Analysis:
        return self._detector.analyze(text)

    def detect(self, step: str, result: Result) -> Failure:
        return self._detector.detect(step, result)

    def failure_of(self, text: str, step: str = "") -> Failure:
        """A Failure for raw text (CLI, simulator)."""
        return self.detect(step, text_result(text))

    # --- ranking ------------------------------------------------------------------------

    def neighbours(self, signature: str, classes: Iterable[str], step: str = "") -> list[Neighbour]:
        return self._evidence.neighbours(signature, classes, step)

    def _score(self, failure: Failure, analysis: Analysis | None = None) -> Scored:
        a = analysis or self.analyze(text_of(failure.result))
        return score_candidates(failure, a, self._evidence, self.model, self.parts)

    def rank(
        self, text: str, step: str = "", analysis: Analysis | None = None
    ) -> tuple[Analysis, list[CandidateDetail]]:
        """Analysis and scored candidates of a raw error text (no exploration)."""
        a = analysis or self.analyze(text)
        scored = self._score(failure_from(step, text_result(text), a), a)
        return a, described(scored)

    def candidates(self, failure: Failure, *, exclude: Collection[str] = ()) -> list[Candidate]:
        """Ranked candidates for a failure (see :func:`.order.order_candidates` for how the
        strategies in ``exclude``, already failed for this error in this deployment, are
        demoted); with nothing excluded, now and then an untried alternative goes first."""
        ordered = order_candidates(described(self._score(failure)), exclude)
        if exclude:
            return ordered.candidates
        return self._explorer.maybe_explore(failure.signature, ordered)

    def explain(self, text: str, step: str = "") -> Explanation:
        """Everything behind a ranking, structured (no exploration)."""
        a = self.analyze(text)
        return explanation(self._score(failure_from(step, text_result(text), a), a))
