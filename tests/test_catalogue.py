"""One strategy catalogue: the data file, the code that applies each entry, and the ranker's view
of it agree; every strategy, built in, plugin or from the knowledge base, has one shape."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from aideploy.core.clock import FakeClock
from aideploy.core.recovery import Failure, Risk
from aideploy.core.result import Result
from aideploy.core.strategies import (
    CATALOGUE,
    EVERY_CLASS,
    CatalogueError,
    StrategySpec,
    load_catalogue,
)
from aideploy.engine.connectors.local import LocalConnector
from aideploy.engine.recovery import StrategyContext
from aideploy.engine.runner import Runner
from aideploy.knowledge import classes
from aideploy.knowledge.classes import (
    CLASS_STRATEGIES,
    ERROR_CLASSES,
    check_catalogue,
    related_strategies,
    risk_of,
)
from aideploy.knowledge.store import StrategyInfo
from aideploy.steps import strategies as strategies_module
from aideploy.steps.strategies import (
    APPLY,
    BUILTIN,
    Commands,
    Recovery,
    as_strategy,
    commands,
    from_knowledge,
    registry,
)

ENTRY = """
[zap]
risk = "low"
classes = ["disk_full"]
needs = ["path", "APP_ROOT"]
description = "Zap it."
"""


def test_every_catalogue_entry_has_code_and_every_piece_of_code_an_entry() -> None:
    assert list(APPLY) == list(CATALOGUE)
    assert [s.spec for s in BUILTIN] == list(CATALOGUE.values())
    for name, strategy in registry(plugins=False).items():
        assert isinstance(strategy, Recovery), name
        assert strategy.spec is CATALOGUE[name]
        # the code, seeing only what the entry needs
        assert strategy.apply.__wrapped__ is APPLY[name]  # type: ignore[attr-defined]


def test_catalogue_entries_name_real_error_classes_and_the_ranker_reads_them() -> None:
    for name, spec in CATALOGUE.items():
        assert spec.description and spec.classes, name
        assert set(spec.classes) <= {*ERROR_CLASSES, EVERY_CLASS}, name
        assert risk_of(name) is spec.risk
    assert classes.CATALOGUE is CATALOGUE
    assert all(CATALOGUE["manual_intervention"].serves(c) for c in ERROR_CLASSES)
    for cls in ERROR_CLASSES:
        related = related_strategies(cls)
        assert set(related) == {
            n for n, s in CATALOGUE.items() if cls in s.classes and n != "manual_intervention"
        }
    assert risk_of("not_in_the_catalogue") is Risk.HIGH


def test_the_ranker_refuses_a_catalogue_naming_an_unknown_class_or_missing_a_default() -> None:
    check_catalogue()
    bad = {**CATALOGUE, "apt_update": replace(CATALOGUE["apt_update"], classes=("apt_locks",))}
    with pytest.raises(CatalogueError, match=r"\[apt_update\] classes: 'apt_locks'"):
        check_catalogue(bad)
    without = {n: s for n, s in CATALOGUE.items() if n != "cleanup_disk"}
    with pytest.raises(CatalogueError, match="'cleanup_disk' of disk_full"):
        check_catalogue(without)
    assert "cleanup_disk" in CLASS_STRATEGIES["disk_full"]


def _referenced(apply: Commands) -> set[str]:
    """What a command strategy's shell text reads: AIDEPLOY_<DETAIL> as the detail's lower-case
    name, and upper-case plan variables (not HOME)."""
    text = " ".join([*apply.commands, apply.guard or ""])
    found = {m.lower() for m in re.findall(r"\bAIDEPLOY_([A-Z][A-Z0-9_]*)\b", text)}
    for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\b", text):
        if not name.startswith("AIDEPLOY_") and name != "HOME":
            found.add(name)
    return found


def test_a_command_strategy_needs_what_its_commands_read() -> None:
    checked = 0
    for name, apply in APPLY.items():
        if isinstance(apply, Commands):
            assert _referenced(apply) == set(CATALOGUE[name].needs), name
            checked += 1
    assert checked > 15


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[zap\n", r"not valid TOML"),
        (ENTRY.replace('"low"', '"lowish"'), r"\[zap\]: risk 'lowish' is not one of low"),
        (ENTRY + 'command = "rm"\n', r"\[zap\]: unknown key 'command'"),
        (ENTRY.replace('description = "Zap it."', ""), r"\[zap\]: missing 'description'"),
        (ENTRY.replace('["disk_full"]', "[]"), r"\[zap\]: classes is empty"),
        (ENTRY.replace('["disk_full"]', '"disk_full"'), r"\[zap\]: classes must be a list"),
        (ENTRY.replace('"APP_ROOT"', '"App_Root"'), r"\[zap\]: needs: 'App_Root' is not"),
        (ENTRY.replace("[zap]", "[Zap]"), r"\[Zap\]: a strategy name is lower case"),
        ("", r"no strategy"),
    ],
)
def test_a_broken_catalogue_file_is_refused_with_the_entry_and_key(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=r"^strategies\.toml: " + message):
        load_catalogue(text, "strategies.toml")


def test_a_catalogue_entry_is_read_in_full() -> None:
    spec = load_catalogue(ENTRY)["zap"]
    assert spec == StrategySpec("zap", Risk.LOW, "Zap it.", ("disk_full",), ("path", "APP_ROOT"))
    assert spec.details == ("path",) and spec.plan_variables == ("APP_ROOT",)
    assert spec.serves("disk_full") and not spec.serves("apt_lock")


def _ctx(tmp_path: Path, details: dict[str, str], settings: dict[str, object]) -> StrategyContext:
    empty = Result(command="", host="local", exit_code=1, stdout="", stderr="", duration=0.0)
    return StrategyContext(
        runner=Runner(LocalConnector(), timeout=30),
        failure=Failure("step", empty, "disk_full", "", details),
        clock=FakeClock(),
        approve=lambda question: False,
        settings=settings,
    )


def test_commands_see_details_quoted_and_the_plan_variables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    apply = commands(f'printf "%s|%s" "$AIDEPLOY_PATH" "$APP_ROOT" > {out}')
    ctx = _ctx(tmp_path, {"path": "/srv/a b; rm -rf /"}, {"APP_ROOT": "/srv", "x": "y"})
    assert apply(ctx) is True
    assert out.read_text() == "/srv/a b; rm -rf /|/srv"
    guarded = commands(f"touch {tmp_path / 'ran'}", guard='[ "$APP_ROOT" = /srv ]')
    assert guarded(ctx) is False and not (tmp_path / "ran").exists()  # nothing to do
    assert commands("true", "false", f"touch {tmp_path / 'ran'}")(ctx) is False
    assert not (tmp_path / "ran").exists()


def _row(name: str, *, trusted: bool, commands: tuple[str, ...] | None) -> StrategyInfo:
    return StrategyInfo(name, "", "high", "import:x", trusted, commands)


def test_knowledge_base_strategies_join_only_when_trusted_and_never_replace_a_builtin(
    tmp_path: Path,
) -> None:
    builtin = registry(plugins=False)
    marker = tmp_path / "restarted"
    joined = from_knowledge(
        [
            _row("restart_gunicorn", trusted=True, commands=(f"touch {marker}",)),
            _row("purge_everything", trusted=False, commands=("rm -rf /srv",)),
            _row("stats_only", trusted=True, commands=None),
            _row("cleanup_disk", trusted=True, commands=("rm -rf /",)),
        ],
        known=builtin,
    )
    [strategy] = joined
    assert isinstance(strategy, Recovery)  # the same shape as a built-in
    assert strategy.spec.name == "restart_gunicorn"
    assert strategy.spec.risk is Risk.HIGH  # asks first, as the KB says
    assert strategy.apply(_ctx(tmp_path, {}, {})) and marker.exists()


def test_plugins_are_strategies_of_the_same_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StrategySpec("flush_cache", Risk.LOW, "Empty the cache.", ("disk_full",))
    flush = Recovery(spec, commands("true"))
    legacy = SimpleNamespace(
        name="old_style", risk="medium", description="Old.", classes=("disk_full",), apply=bool
    )

    class EntryPoint:
        def __init__(self, name: str, obj: object) -> None:
            self.name, self.obj = name, obj

        def load(self) -> object:
            return self.obj

    points = [
        EntryPoint("flush_cache", flush),
        EntryPoint("factory", lambda: flush),
        EntryPoint("old_style", legacy),
        EntryPoint("junk", 42),
        EntryPoint("free_port", Recovery(replace(spec, name="free_port"), commands("true"))),
    ]
    monkeypatch.setattr(strategies_module, "entry_points", lambda group: points)
    found = registry()
    assert found["flush_cache"] is flush
    old = found["old_style"]
    assert isinstance(old, Recovery) and old.spec.risk is Risk.MEDIUM
    assert old.spec.classes == ("disk_full",)
    assert found["free_port"].spec.description == "Empty the cache."  # a plugin replaces
    assert set(found) == {*CATALOGUE, "flush_cache", "old_style"}
    assert as_strategy(42) is None
