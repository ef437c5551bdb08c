"""The docs keep up with the code: every command has help and a page, every config key is in the
reference (which is what ``aideploy config docs`` prints), and every aideploy command in the guide
mapping parses."""

from __future__ import annotations

import re
import shlex
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import msgspec
import pytest
from click.testing import CliRunner

from aideploy.cli import learn_html as cli_html  # noqa: F401  (registers `learn report-html`)
from aideploy.cli.main import cli
from aideploy.core.strategies import CATALOGUE, EVERY_CLASS
from aideploy.services.config import Config, schema_docs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMANDS = DOCS / "commands"
GUIDE_COMMANDS = (
    "./ai_deploy.sh --interactive",
    "./ai_deploy.sh --server",
    "./ai_deploy.sh --profile production",
    "python ai_deployment_orchestrator.py --test-connection --server",
    "python ai_deployment_orchestrator.py --resume --deployment-id",
    "python setup_ai_deployment.py",
    "tail -f logs/deployment_*.log",
)


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """A group's commands as click looks them up (``learn`` loads its modules on first use)."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(subcommands(command).items()):
            yield from walk(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group), path
        command = subcommands(command)[name]
    return command


PATHS = [p for p in walk(cli) if p]


def page(path: tuple[str, ...]) -> Path:
    return COMMANDS / f"{'-'.join(path)}.md"


@pytest.mark.parametrize("path", PATHS, ids=["-".join(p) for p in PATHS])
def test_command_has_help_and_a_page(path: tuple[str, ...]) -> None:
    command = command_at(path)
    assert (command.help or "").strip(), f"aideploy {' '.join(path)} has no help text"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    doc = page(path)
    assert doc.is_file(), f"no page {doc.relative_to(ROOT)} for aideploy {' '.join(path)}"
    text = doc.read_text(encoding="utf-8")
    assert f"aideploy {' '.join(path)}" in text
    for param in command.params:
        longs = [o for o in param.opts if o.startswith("--")]
        if isinstance(param, click.Option) and longs and param.name != "help":
            assert any(o in text for o in longs), f"{doc.name} does not mention {longs[0]}"
    if isinstance(command, click.Group):
        for name in subcommands(command):
            assert f"{'-'.join((*path, name))}.md" in text, f"{doc.name} does not link {name}"


def test_command_index_links_every_page_and_the_global_options() -> None:
    index = (COMMANDS / "index.md").read_text(encoding="utf-8")
    for path in PATHS:
        assert f"({page(path).name})" in index, page(path).name
    for param in cli.params:
        assert any(o in index for o in param.opts if o.startswith("--")), param.name
    known = {page(p).name for p in PATHS} | {"index.md"}
    stray = {p.name for p in COMMANDS.glob("*.md")} - known
    assert not stray, f"pages for commands that do not exist: {sorted(stray)}"


def _config_keys(cls: Any, section: str) -> Iterator[tuple[str, str]]:
    hints = typing.get_type_hints(cls)
    for fld in msgspec.structs.fields(cls):
        yield section, fld.name
        tp = hints[fld.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        origin = typing.get_origin(tp)
        inner = args[-1] if origin in (dict, list) else (args[0] if args else tp)
        if not (isinstance(inner, type) and issubclass(inner, msgspec.Struct)):
            continue
        prefix = "" if section == "Top level" else section + "."
        suffix = ".<name>" if origin is dict else "[]" if origin is list else ""
        yield from _config_keys(inner, f"{prefix}{fld.name}{suffix}")


def _reference_sections() -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    current = None
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip().strip("`"), set())
        match = re.match(r"\| `([^`]+)` \|", line)
        if match and current is not None:
            current.add(match.group(1))
    return sections


def test_every_config_key_is_in_the_reference() -> None:
    sections = _reference_sections()
    keys = list(_config_keys(Config, "Top level"))
    assert len(keys) > 40
    for section, key in keys:
        assert section in sections, f"docs/configuration.md has no section {section}"
        assert key in sections[section], f"docs/configuration.md: {section}: no key {key}"


def test_configuration_reference_is_current() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert text == schema_docs() + "\n", (
        "docs/configuration.md is stale: aideploy config docs > docs/configuration.md"
    )


def _mapping_rows() -> list[tuple[str, list[str]]]:
    rows = []
    for line in (DOCS / "guide-mapping.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        commands = re.findall(r"`(aideploy [^`]+)`", cells[1])
        rows.append((cells[0].strip("`"), commands))
    return rows


def _parse(words: list[str]) -> tuple[str, ...]:
    """Parse an aideploy command line as the CLI would (without running it); its command path."""
    assert words[0] == "aideploy"
    rest = words[1:]
    group: click.Command = cli
    path: list[str] = []
    global_opts: list[str] = []
    while isinstance(group, click.Group):
        while rest and rest[0].startswith("-"):
            option = rest.pop(0)
            global_opts.append(option)
            if option == "--config" and rest:
                global_opts.append(rest.pop(0))
        if not rest and path == [] and set(global_opts) <= {"--version", "--help", "-h"}:
            return ()
        assert rest, f"no command in {' '.join(words)}"
        name = rest.pop(0)
        assert name in subcommands(group), f"{' '.join(words)}: no command {name!r}"
        group = subcommands(group)[name]
        path.append(name)
    parent = cli.make_context("aideploy", [*global_opts, *path], resilient_parsing=False)
    with parent:
        ctx = group.make_context(path[-1], rest, parent=parent)
        ctx.close()
    return tuple(path)


def test_guide_mapping_covers_the_guide_and_every_equivalent_parses() -> None:
    rows = _mapping_rows()
    original = " ".join(cmd for cmd, _ in rows)
    for command in GUIDE_COMMANDS:
        assert command in original, f"guide-mapping.md does not map {command}"
    checked = 0
    for guide_command, equivalents in rows:
        assert equivalents, f"no aideploy equivalent for {guide_command}"
        for text in equivalents:
            path = _parse(shlex.split(text))
            result = CliRunner().invoke(cli, [*path, "--help"])
            assert result.exit_code == 0, f"{text}: {result.output}"
            assert page(path).is_file()
            checked += 1
    assert checked >= len(GUIDE_COMMANDS)


def _bash_commands(path: Path) -> Iterator[str]:
    in_block = False
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = line.strip() in ("```bash", "```sh", "```console")
            continue
        if not in_block:
            continue
        line = pending + line.split(" #", 1)[0].strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.startswith("aideploy "):
            yield line


DOC_PAGES = sorted([DOCS / "guide.md", DOCS / "github-actions.md", *COMMANDS.glob("*.md")])


@pytest.mark.parametrize("doc", DOC_PAGES, ids=[d.name for d in DOC_PAGES])
def test_commands_in_examples_parse(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `aideploy ...` line in a bash block of the guide and the command pages parses."""
    monkeypatch.chdir(tmp_path)  # input files named in examples exist here, empty
    for line in _bash_commands(doc):
        if any(c in line for c in "<>[]|$…") or "..." in line:
            continue  # a synopsis or a shell pipeline, not a literal command
        words = shlex.split(line)
        for word in words:
            if re.fullmatch(r"[\w-]+\.(txt|jsonl)", word):
                (tmp_path / word).touch()
        _parse(words)


def test_docs_say_protected_profiles_are_not_a_security_boundary() -> None:
    text = " ".join((DOCS / "guide.md").read_text(encoding="utf-8").split())
    assert "not a security boundary" in text
    assert "guard rail" in text


def test_example_workflow_is_valid_yaml_when_yaml_is_available() -> None:
    workflow = DOCS / "examples" / "deploy.yml"
    text = workflow.read_text(encoding="utf-8")
    assert "aideploy deploy" in text and "--auto" in text
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(text)
    assert "jobs" in data


def _catalogue_rows() -> list[list[str]]:
    """The strategy table of docs/recovery.md, cell by cell."""
    rows = []
    for line in (DOCS / "recovery.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def test_the_strategy_table_is_the_catalogue() -> None:
    """docs/recovery.md lists every built-in strategy as aideploy/core/strategies.toml has it."""
    expected = [
        [
            f"`{s.name}`",
            s.risk.value,
            "every class" if s.classes == (EVERY_CLASS,) else ", ".join(s.classes),
            ", ".join(f"`{n}`" for n in s.needs),
            s.description,
        ]
        for s in CATALOGUE.values()
    ]
    rows = _catalogue_rows()
    assert [r[0] for r in rows] == [e[0] for e in expected], "docs/recovery.md: names or order"
    for row, want in zip(rows, expected, strict=True):
        assert row == want, f"docs/recovery.md says {row}, the catalogue {want}"


# -- exit codes ------------------------------------------------------------------------------


def _error_tree_codes() -> dict[int, list[str]]:
    """Every exit code of the error tree, every error class loaded (those declared outside
    aideploy.core.errors too)."""
    import aideploy.cli.demo
    import aideploy.cli.wizard
    import aideploy.core.strategies
    import aideploy.engine.audit
    import aideploy.knowledge.rules.loader
    import aideploy.knowledge.rules.safety  # noqa: F401
    from aideploy.core.errors import error_codes

    return error_codes()


def exit_code_rows() -> list[str]:
    """docs/exit-codes.md's table rows, from EXIT_CODES and the error tree."""
    from aideploy.core.errors import EXIT_CODES

    tree = _error_tree_codes()
    rows = []
    for code, (meaning, commands) in sorted(EXIT_CODES.items()):
        classes = ", ".join(f"`{name}`" for name in tree.get(code, [])) or "-"
        rows.append(f"| {code} | {meaning} | {classes} | {commands} |")
    return rows


def test_every_exit_code_of_the_error_tree_is_in_the_contract() -> None:
    from aideploy.core.errors import EXIT_CODES

    tree = _error_tree_codes()
    assert set(tree) <= set(EXIT_CODES), f"codes with no meaning: {set(tree) - set(EXIT_CODES)}"
    assert set(EXIT_CODES) - set(tree) == {0, 70, 130}  # the command line's own


def test_the_exit_codes_page_is_the_error_tree() -> None:
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    expected = exit_code_rows()
    assert rows == expected, "docs/exit-codes.md's table should be:\n" + "\n".join(expected)


def test_readme_and_docs_index_link_the_exit_codes_and_agree_with_them() -> None:
    from aideploy.core.errors import EXIT_CODES

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert "docs/exit-codes.md" in section
    codes = {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    assert codes == set(EXIT_CODES)
    assert "exit-codes.md" in (DOCS / "index.md").read_text(encoding="utf-8")
