"""The executor loop: step -> detect -> rank -> recover -> retry, with state saved as it goes.

Each step runs through the runner; a failure is detected (error class + signature), the advisor
proposes ranked strategies, the first one allowed (risk, approval, not already failed here) is
applied, and the step is re-run after a backoff. Every step run, error and recovery outcome is
recorded as it happens. A step that is not recovered ends the deployment FAILED with its reason;
a failed step can never end in "completed". A step that raises (a deploy lock held by someone
else, LockError) ends it FAILED at once: that is not a failure any recovery could fix.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from aideploy.core.backoff import Backoff
from aideploy.core.clock import Clock, SystemClock
from aideploy.core.errors import (
    LockError,
    ManualInterventionRequired,
    RecoveryExhausted,
    StepFailed,
)
from aideploy.core.events import (
    AttemptDecided,
    AttemptPending,
    DeploymentEnded,
    DeploymentStarted,
    ErrorDetected,
    EventBus,
    EventSink,
    RecoveryStarted,
    StepDone,
    StepRan,
    StepSkipped,
    StepStarted,
)
from aideploy.core.recovery import Candidate, Failure, Outcome, Risk, outcome_context
from aideploy.core.result import Result
from aideploy.core.settings import DeploymentSettings
from aideploy.engine.connectors.base import Connector
from aideploy.engine.logs import current_step
from aideploy.engine.plan import Check, Plan, Step, StepContext
from aideploy.engine.recovery import AdvisorLearner, RecoveryAdvisor, Strategy, StrategyContext
from aideploy.engine.runner import Runner
from aideploy.engine.state import (
    AttemptPhase,
    DeploymentState,
    DeploymentStatus,
    Incident,
    PendingAttempt,
    StepState,
    StepStatus,
    now_iso,
)

log = logging.getLogger("aideploy.executor")


@dataclass
class Executor:
    plan: Plan
    connector: Connector
    runner: Runner
    advisor: RecoveryAdvisor
    strategies: Mapping[str, Strategy]
    state: DeploymentState
    settings: DeploymentSettings = field(default_factory=DeploymentSettings)
    clock: Clock = field(default_factory=SystemClock)
    backoff: Backoff | None = None
    approve: Callable[[str], bool] = lambda question: False
    #: where events go besides the advisor (knowledge base, progress display...)
    sinks: Sequence[EventSink] = ()
    context: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = EventBus([AdvisorLearner(self.advisor), *self.sinks])
        self._proposed: dict[str, Candidate] = {}  # every candidate seen for the current step
        if self.backoff is None:
            self.backoff = Backoff(base=self.settings.retry_delay, cap=60.0)
        if not self.state.steps:
            self.state.steps = [StepState(s.name) for s in self.plan.steps]
        self.state.total_steps = len(self.plan.steps)

    # -- the whole plan --------------------------------------------------------------------

    def run(self) -> DeploymentState:
        """Run from the first unfinished step to the end; returns the final state."""
        state = self.state
        start = state.first_unfinished()
        state.status = DeploymentStatus.RUNNING
        state.reason = None
        state.end_time = None
        state.claim()
        state.save()
        self.events.publish(
            DeploymentStarted(
                state.deployment_id, self.plan.name, self.connector.host, state.profile
            )
        )
        try:
            for index in range(start, len(self.plan.steps)):
                self._run_step(index, self.plan.steps[index])
        except ManualInterventionRequired as exc:
            self._finish(DeploymentStatus.PAUSED, str(exc))
            raise
        except (StepFailed, LockError) as exc:  # a held lock ends it at once: no recovery
            self._finish(DeploymentStatus.FAILED, str(exc))
            raise
        except BaseException as exc:  # interrupted: keep it resumable, say why
            self._finish(DeploymentStatus.FAILED, f"interrupted: {type(exc).__name__}: {exc}")
            raise
        self._finish(DeploymentStatus.COMPLETED, None)
        return state

    def _finish(self, status: DeploymentStatus, reason: str | None) -> None:
        state = self.state
        if status is DeploymentStatus.COMPLETED and any(
            s.status not in (StepStatus.DONE, StepStatus.SKIPPED) for s in state.steps
        ):  # never claim completion with an unfinished step
            status, reason = DeploymentStatus.FAILED, "not every step finished"
        state.status = status
        state.reason = reason
        state.end_time = now_iso()
        if status is not DeploymentStatus.COMPLETED:  # the step it stopped in says how
            halted = StepStatus.PAUSED if status is DeploymentStatus.PAUSED else StepStatus.FAILED
            for step_state in state.steps:
                if step_state.status in (StepStatus.RUNNING, StepStatus.RECOVERING):
                    step_state.status = halted
                    step_state.ended_at = state.end_time
        state.owner = {}
        state.save()
        self.events.publish(DeploymentEnded(state.deployment_id, status.value, reason))

    # -- one step --------------------------------------------------------------------------

    def _ctx(self) -> StepContext:
        return StepContext(
            runner=self.runner,
            connector=self.connector,
            env=self.plan.env,
            deployment_id=self.state.deployment_id,
            settings=dict(self.context),
            clock=self.clock,
        )

    def _run_step(self, index: int, step: Step) -> None:
        state = self.state
        step_state = state.steps[index]
        token = current_step.set(step.name)
        try:
            state.current_step = index + 1
            step_state.status = StepStatus.RUNNING
            step_state.started_at = step_state.started_at or now_iso()
            state.save()
            log.info(
                "step %d/%d %s started: %s",
                index + 1,
                len(self.plan.steps),
                step.name,
                step.description,
                extra={"event": "step_start"},
            )
            self.events.publish(
                StepStarted(
                    state.deployment_id,
                    step.name,
                    index + 1,
                    len(self.plan.steps),
                    step.description,
                )
            )
            interrupted = self._interrupted_attempt(step_state)
            if step.check is not None and self._check(step.check, step):
                log.info("step %s already done, skipped", step.name)
                if interrupted is not None:  # the strategy did its job before the interruption
                    self._settle(interrupted, Outcome.RECOVERED)
                self._step_done(step_state, StepStatus.SKIPPED)
                self.events.publish(StepSkipped(state.deployment_id, step.name))
                return
            self._attempt_until_done(step, step_state, interrupted)
            self._step_done(step_state, StepStatus.DONE)
            log.info(
                "step %s done (%d attempt%s)",
                step.name,
                step_state.attempts,
                "" if step_state.attempts == 1 else "s",
                extra={"event": "step_done"},
            )
            self.events.publish(StepDone(state.deployment_id, step.name, step_state.attempts))
        finally:
            current_step.reset(token)

    def _step_done(self, step_state: StepState, status: StepStatus) -> None:
        # saved with what comes next, before it acts: the next step's start (one durable
        # write per step, not two) or the deployment's end; a crash in between leaves the step
        # RUNNING on disk, and resume runs it again, as it would after a crash inside it
        step_state.status = status
        step_state.ended_at = now_iso()

    def _check(self, check: Check, step: Step) -> bool:
        if check is None:
            return True
        if isinstance(check, str):
            return self.runner.run(check, env=self.plan.env, timeout=step.timeout).ok
        return bool(check(self._ctx()))

    def _execute(self, step: Step) -> Result:
        """Run the step's work once; the first failing command's Result, else the last one."""
        result: Result | None = None
        if step.work is not None:
            result = step.work(self._ctx())
        for command in step.commands:
            result = self.runner.run(command, env=self.plan.env, timeout=step.timeout)
            if not result.ok:
                return result
        if result is None:
            result = Result(f"<{step.name}>", self.connector.host, 0, "", "", 0.0)
        if result.ok and step.verify is not None and not self._check(step.verify, step):
            verify = step.verify if isinstance(step.verify, str) else f"<verify {step.name}>"
            return Result(
                verify,
                self.connector.host,
                1,
                "",
                f"verification failed for step {step.name}",
                result.duration,
            )
        return result

    def _interrupted_attempt(self, step_state: StepState) -> tuple[Failure, Candidate] | None:
        """On resume: the recovery attempt a previous run left undecided on this step.

        One interrupted while its strategy acted is settled ``unknown`` at once; one whose
        strategy had finished is returned, for the step's check or its next run to decide.
        """
        saved = step_state.pending
        if saved is None:
            return None
        failure = saved.failure(step_state.name, self.connector.host)
        candidate = Candidate(saved.strategy, 0.0, "interrupted attempt", saved.decided_by)
        if saved.phase is AttemptPhase.APPLYING:
            log.warning(
                "recovery %s on step %s was interrupted while it acted: outcome unknown",
                saved.strategy,
                step_state.name,
            )
            self._settle((failure, candidate), Outcome.UNKNOWN)
            return None
        return failure, candidate

    def _settle(self, attempt: tuple[Failure, Candidate], outcome: Outcome) -> None:
        failure, candidate = attempt
        saved = self.state.step(failure.step).pending
        duration = saved.duration if saved is not None else 0.0
        self._outcome(failure, candidate, outcome, duration)

    def _attempt_until_done(
        self,
        step: Step,
        step_state: StepState,
        interrupted: tuple[Failure, Candidate] | None = None,
    ) -> None:
        # strategies whose re-run failed for this step in this deployment (demoted, retried once
        # more only after every other candidate), and those ruled out (not approved, could not act)
        tried: list[str] = []
        ruled_out: set[str] = set()
        self._proposed = {}
        pending: tuple[Failure, Candidate, float] | None = None
        if interrupted is not None:  # this run decides the attempt a previous run left pending
            saved = step_state.pending
            pending = (*interrupted, saved.duration if saved is not None else 0.0)
        max_attempts = 1 + self.settings.max_retries
        attempts_here = 0
        while True:
            attempts_here += 1
            step_state.attempts += 1
            result = self._execute(step)
            self.events.publish(
                StepRan(self.state.deployment_id, step.name, step_state.attempts, result)
            )
            if pending is not None:
                failure, candidate, duration = pending
                outcome = Outcome.RECOVERED if result.ok else Outcome.FAILED
                self._outcome(failure, candidate, outcome, duration)
                if not result.ok:
                    tried.append(candidate.strategy)
                pending = None
            if result.ok:
                return
            failure = self.advisor.detect(step.name, result)
            step_state.error_class = failure.error_class
            step_state.history.append(Incident("error", error_class=failure.error_class))
            self.state.error_count += 1
            self.state.save()
            log.error(
                "step %s failed (exit %s%s): %s [class %s]",
                step.name,
                result.exit_code,
                ", timed out" if result.timed_out else "",
                result.tail(3),
                failure.error_class,
                extra={"event": "error", "error_class": failure.error_class},
            )
            self.events.publish(ErrorDetected(self.state.deployment_id, failure))
            if not self.settings.auto_recovery:
                raise StepFailed(self._reason(step, failure, "automatic recovery is off"))
            if attempts_here >= max_attempts:
                raise RecoveryExhausted(
                    self._reason(
                        step,
                        failure,
                        f"not recovered after {attempts_here} attempts "
                        f"(tried: {', '.join(tried) or 'nothing'})",
                    )
                )
            pending = self._recover(step, step_state, failure, tried, ruled_out)
            if pending is None:
                raise RecoveryExhausted(
                    self._reason(
                        step,
                        failure,
                        f"no recovery left to try (tried: {', '.join(tried) or 'none'})",
                    )
                )
            assert self.backoff is not None
            self.clock.sleep(self.backoff.delay(attempts_here))

    def _recover(
        self,
        step: Step,
        step_state: StepState,
        failure: Failure,
        tried: list[str],
        ruled_out: set[str],
    ) -> tuple[Failure, Candidate, float] | None:
        """Apply the best allowed strategy that acts; None when none is left.

        The attempt is saved as pending with the step marked recovering (one atomic write of
        the state) and recorded pending before the strategy acts, so an interruption at any
        point leaves it to be settled on resume instead of losing it.
        """
        while (chosen := self._choose(failure, tried, ruled_out)) is not None:
            candidate, strategy = chosen
            started = self.clock.now()
            attempt_id = uuid.uuid4().hex
            context = {**self.context, **outcome_context(failure)}
            step_state.recoveries.append(candidate.strategy)
            step_state.status = StepStatus.RECOVERING
            step_state.pending = saved = PendingAttempt(
                attempt_id,
                candidate.strategy,
                failure.error_class,
                failure.signature,
                candidate.decided_by,
                context=context,
            )
            self.state.warnings.append(
                f"{step.name}: {failure.error_class} -> {candidate.strategy}"
            )
            self.state.save()
            self.events.publish(
                AttemptPending(
                    self.state.deployment_id,
                    attempt_id,
                    failure,
                    candidate.strategy,
                    candidate.decided_by,
                    context,
                )
            )
            log.warning(
                "recovering %s with %s (%s)",
                failure.error_class,
                candidate.strategy,
                candidate.why,
                extra={"event": "recovery", "strategy": candidate.strategy},
            )
            self.events.publish(
                RecoveryStarted(
                    self.state.deployment_id, step.name, candidate.strategy, candidate.why
                )
            )
            applied = self._apply(strategy, failure)
            duration = self.clock.now() - started
            if applied:
                step_state.pending = replace(saved, phase=AttemptPhase.APPLIED, duration=duration)
                step_state.status = StepStatus.RUNNING
                self.state.save()
                return failure, candidate, duration
            # the strategy found nothing to do or could not act: next candidate, no re-run
            self._outcome(failure, candidate, Outcome.FAILED, duration)
            tried.append(candidate.strategy)
            ruled_out.add(candidate.strategy)
        return None

    def _reason(self, step: Step, failure: Failure, why: str) -> str:
        last = failure.result.tail(1) or f"exit code {failure.result.exit_code}"
        return f"step {step.name} failed ({failure.error_class}: {last}); {why}"

    def _choose(
        self, failure: Failure, tried: list[str], ruled_out: set[str]
    ) -> tuple[Candidate, Strategy] | None:
        """The next strategy to run: untried candidates in rank order, then (demoted, once
        more) those that failed earlier here, and manual intervention last of all."""
        ranked = self.advisor.candidates(failure, exclude=tried)
        for candidate in ranked:
            self._proposed.setdefault(candidate.strategy, candidate)
        fresh = [c for c in ranked if c.strategy not in tried and c.strategy not in ruled_out]
        again = [
            c
            for name, c in self._proposed.items()
            if tried.count(name) == 1 and name not in ruled_out
        ]
        manual = [c for c in fresh if c.strategy == "manual_intervention"]
        fresh = [c for c in fresh if c.strategy != "manual_intervention"]
        for candidate in [*fresh, *again, *manual]:
            strategy = self.strategies.get(candidate.strategy)
            if strategy is None:
                log.debug("no strategy named %s, skipped", candidate.strategy)
                ruled_out.add(candidate.strategy)
                continue
            spec = strategy.spec
            unmet = spec.unmet(failure.details, self.plan.env)
            if unmet:  # it would have to guess what to act on: not a candidate
                log.info(
                    "%s is not a candidate: it needs %s, which neither the error nor the plan "
                    "names",
                    spec.name,
                    ", ".join(unmet),
                )
                ruled_out.add(candidate.strategy)
                continue
            if candidate.strategy == "manual_intervention":
                return candidate, strategy
            if spec.risk is Risk.HIGH and not self.settings.auto_approve:
                question = (
                    f"{failure.step}: {failure.error_class}. Run high-risk recovery "
                    f"{spec.name} ({spec.description})?"
                )
                if not self.approve(question):
                    log.warning("high-risk recovery %s not approved, skipped", spec.name)
                    self._outcome(failure, candidate, Outcome.SKIPPED, 0.0)
                    ruled_out.add(candidate.strategy)
                    continue
            return candidate, strategy
        return None

    def _apply(self, strategy: Strategy, failure: Failure) -> bool:
        ctx = StrategyContext(
            runner=self.runner,
            failure=failure,
            clock=self.clock,
            approve=self.approve,
            settings={**self.context, **self.plan.env, "auto_approve": self.settings.auto_approve},
        )
        try:
            return bool(strategy.apply(ctx))
        except ManualInterventionRequired:
            raise
        except StepFailed:
            raise
        except Exception as exc:  # a strategy's own failure is an outcome, not a crash
            log.error("recovery %s raised %s: %s", strategy.spec.name, type(exc).__name__, exc)
            return False

    def _outcome(
        self, failure: Failure, candidate: Candidate, outcome: Outcome, duration: float
    ) -> None:
        log.info(
            "recovery %s for %s: %s",
            candidate.strategy,
            failure.error_class,
            outcome.value,
            extra={"event": "outcome", "strategy": candidate.strategy, "outcome": outcome.value},
        )
        step_state = self.state.step(failure.step)
        saved = step_state.pending
        attempt_id = saved.attempt_id if saved and saved.strategy == candidate.strategy else None
        # recorded before the pending attempt is cleared from the state: an interruption in
        # between decides it again on resume, which updates the same record
        self.events.publish(
            AttemptDecided(
                self.state.deployment_id,
                failure,
                candidate.strategy,
                outcome,
                duration,
                candidate.decided_by,
                {**self.context, **outcome_context(failure)},
                attempt_id,
            )
        )
        step_state.history.append(
            Incident("outcome", strategy=candidate.strategy, outcome=outcome.value)
        )
        if attempt_id is not None:
            step_state.pending = None
            if step_state.status is StepStatus.RECOVERING:
                step_state.status = StepStatus.RUNNING
        self.state.save()
