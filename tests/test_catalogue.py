"""The strategy catalogue the executor runs and the one the ranker scores agree."""

from __future__ import annotations

from aideploy.knowledge.classes import CATALOGUE, ERROR_CLASSES
from aideploy.steps.strategies import registry


def test_every_strategy_is_known_to_the_ranker_with_the_same_risk() -> None:
    strategies = registry(plugins=False)
    assert set(strategies) == set(CATALOGUE)
    for name, strategy in strategies.items():
        assert CATALOGUE[name].risk == strategy.risk, name
        assert strategy.description and strategy.classes, name
        assert set(strategy.classes) <= set(ERROR_CLASSES), name


def test_knowledge_base_strategies_join_only_when_trusted_and_never_replace_a_builtin() -> None:
    from aideploy.core.recovery import Risk
    from aideploy.knowledge.store import StrategyInfo
    from aideploy.steps.strategies import from_knowledge

    def row(name: str, *, trusted: bool, commands: tuple[str, ...] | None) -> StrategyInfo:
        return StrategyInfo(name, "", "high", "import:x", trusted, commands)

    builtin = registry(plugins=False)
    joined = from_knowledge(
        [
            row("restart_gunicorn", trusted=True, commands=("systemctl restart gunicorn",)),
            row("purge_everything", trusted=False, commands=("rm -rf /srv",)),
            row("stats_only", trusted=True, commands=None),
            row("cleanup_disk", trusted=True, commands=("rm -rf /",)),
        ],
        known=builtin,
    )
    assert [s.name for s in joined] == ["restart_gunicorn"]
    assert joined[0].risk is Risk.HIGH  # asks first, as the KB says
