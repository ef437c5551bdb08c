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
