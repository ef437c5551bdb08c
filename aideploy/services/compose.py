"""The composition root: where the library's parts are built and wired together.

Lower floors ask for what they need through protocols of their own (the executor's advisor and
strategies, the event sinks, the connector); this module is the one place that picks the real
implementations: the knowledge base, the ranker with its rules, the strategies a deployment may
run, and the connector a target needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aideploy.core.errors import ConfigError, KnowledgeBaseError
from aideploy.core.recovery import Risk
from aideploy.engine.connectors.base import Connector
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.connectors.session import SessionConnector
from aideploy.engine.connectors.ssh import SSHConnector
from aideploy.engine.recovery import RecoveryAdvisor, Strategy
from aideploy.engine.runner import Runner
from aideploy.knowledge.auto_cap import AutoCap
from aideploy.knowledge.history import PastOutcome
from aideploy.knowledge.ranker import Ranker
from aideploy.knowledge.ranker.detect import Detector, bundled_classifier
from aideploy.knowledge.rules import ErrorPattern, RuleSet
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services.config import Config
from aideploy.services.target import Ask, Target
from aideploy.steps.strategies import from_knowledge, registry

#: how often a deployment's ranker tries a less proven candidate first (see the ranker)
EXPLORE = 0.05


def open_knowledge(url: str | None, *, existing: bool = False) -> KnowledgeBase:
    """The knowledge base at ``url`` (default location when None). With ``existing`` a file
    named by ``url`` must exist (commands that only read refuse to create one at a typo)."""
    try:
        return KnowledgeBase.open(url, existing=existing)
    except KnowledgeBaseError:
        raise
    except Exception as exc:  # a bad URL or file: one line, not a traceback
        raise KnowledgeBaseError(
            f"cannot open knowledge base {url or '(default)'}: {exc}"
        ) from None


def build_ranker(
    knowledge: KnowledgeBase, config: Config | None = None, *, explore: float | None = None
) -> Ranker:
    """The ranker over ``knowledge``: the built-in rules, the KB's trusted patterns and the
    configuration's custom patterns. ``explore=0`` makes it deterministic (for explaining)."""
    rules = RuleSet.from_kb(knowledge)
    for pattern in config.custom_patterns if config is not None else ():
        rules.add(ErrorPattern.from_row(pattern))
    return Ranker(knowledge, rules, explore=EXPLORE if explore is None else explore)


def import_classifier(knowledge: KnowledgeBase) -> Callable[[Sequence[str]], list[str]]:
    """The error class of each text, for records an import brings without one: the built-in
    rules, the KB's trusted patterns and the bundled classifier (loaded only when called)."""

    def classify(texts: Sequence[str]) -> list[str]:
        detector = Detector(RuleSet.from_kb(knowledge), bundled_classifier())
        return [a.error_class for a in detector.analyze_many(texts)]

    return classify


@dataclass(frozen=True)
class LocalHistory:
    """The outcomes recorded in ``knowledge`` itself, without any imported one."""

    knowledge: KnowledgeBase

    def past_outcomes(self) -> list[PastOutcome]:
        return self.knowledge.past_outcomes(local_only=True)


def build_advisor(
    knowledge: KnowledgeBase,
    config: Config | None,
    known: Mapping[str, Strategy],
    *,
    auto: bool,
) -> RecoveryAdvisor:
    """The advisor of a deployment: the ranker; under ``--auto``, when the ranking uses
    imported outcomes, capped so that they raise no medium- or high-risk strategy above what
    local evidence supports (:mod:`aideploy.knowledge.auto_cap`)."""
    ranker = build_ranker(knowledge, config)
    if not auto or not knowledge.has_imported_evidence():
        return ranker
    local = Ranker(LocalHistory(knowledge), ranker.rules, explore=0.0)

    def risk(name: str) -> Risk:
        strategy = known.get(name)
        return strategy.spec.risk if strategy is not None else Risk.HIGH

    return AutoCap(ranker, local, risk)


def strategies(knowledge: KnowledgeBase) -> dict[str, Strategy]:
    """Built-in and plugin strategies, and the command strategies the KB has that are trusted."""
    found = registry()
    found.update((s.spec.name, s) for s in from_knowledge(knowledge.strategies(), known=found))
    return found


def build_connector(
    target: Target,
    *,
    ask_secret: Ask | None = None,
    session: bool | None = None,
) -> Connector:
    """The connector for ``target`` (not yet connected); wrapped in a session when asked."""
    inner: Connector
    if target.kind == "local":
        inner = LocalConnector()
    else:
        password = None
        if target.use_password:
            if ask_secret is None:
                raise ConfigError(
                    f"{target.describe()}: password login needs an interactive terminal"
                )
            password = ask_secret(f"Password for {target.describe()}")
        inner = SSHConnector(
            target.hostname,
            port=target.port,
            username=target.username,
            key_filename=target.key_file,
            password=password,
            passphrase_callback=(
                (lambda path: ask_secret(f"Passphrase for {path}")) if ask_secret else None
            ),
            known_hosts=Path(target.known_hosts).expanduser(),
            accept_new_host_key=target.accept_new_host_key,
            connect_timeout=target.connect_timeout,
            ssh_config=target.ssh_config,
            connect_retries=target.connect_retries,
            keepalive=target.keepalive,
        )
    use_session = target.session_mode if session is None else session
    if use_session:
        return SessionConnector(inner)
    return inner


@contextmanager
def target_runner(
    config: Config, target: Target, ask_secret: Ask | None = None
) -> Iterator[Runner]:
    """A runner on ``target`` for a short job (rollback, unlock): one plain connection (no
    session), the configured command timeout, closed when the block ends."""
    connector = build_connector(target, session=False, ask_secret=ask_secret)
    connector.connect()
    try:
        yield Runner(connector, timeout=config.deployment.command_timeout)
    finally:
        connector.close()
