"""``aideploy learn classify | explain | patterns``: the ranker from the command line."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, TypeVar

import click
import re2

from aideploy.core.errors import ConfigError, KnowledgeBaseError, UsageError
from aideploy.core.inputs import STDIN, check_regular
from aideploy.core.redact import redact
from aideploy.engine.plan import load_plan
from aideploy.engine.recovery import Strategy
from aideploy.knowledge.classes import ERROR_CLASSES
from aideploy.knowledge.ranker import Analysis, Ranker
from aideploy.knowledge.ranker.detect import text_result
from aideploy.knowledge.rules import SEVERITIES, ErrorPattern
from aideploy.knowledge.rules.ruleset import MAX_TEXT_CHARS
from aideploy.knowledge.store import KnowledgeBase
from aideploy.services import compose
from aideploy.services.compose import open_knowledge

MIN_CLASSES = 3
BATCH = 256  # texts analysed together (at most what the ranker keeps for detection)


def build_ranker(url: str | None) -> Ranker:
    """The ranker a deployment would use over the KB at ``url``, without exploration."""
    return compose.build_ranker(open_knowledge(url), explore=0.0)


@dataclass(frozen=True)
class Unmet:
    """A strategy the ranking proposes that is not a candidate: what it needs and is not given."""

    strategy: str
    needs: tuple[str, ...]

    @property
    def why(self) -> str:
        found = [n for n in self.needs if n.islower()]
        plan = [n for n in self.needs if not n.islower()]
        parts = [f"the error names no {', '.join(found)}"] if found else []
        if plan:
            parts.append(f"the plan sets no {', '.join(plan)}")
        return "; ".join(parts)


class _Proposed(Protocol):
    @property
    def strategy(self) -> str: ...


P = TypeVar("P", bound=_Proposed)


def split_candidates(
    proposed: Sequence[P],
    details: Mapping[str, str],
    variables: Mapping[str, str] | None,
    known: Mapping[str, Strategy],
) -> tuple[list[P], list[Unmet]]:
    """The proposed strategies that are candidates, and those that are not for a need neither
    the error nor the plan gives (the executor's rule, :meth:`StrategySpec.unmet`). Without a
    plan (``variables`` None) only what the error must name is checked."""
    kept: list[P] = []
    unmet: list[Unmet] = []
    for d in proposed:
        strategy = known.get(d.strategy)
        missing = strategy.spec.unmet(details, variables or {}) if strategy is not None else ()
        if variables is None:
            missing = tuple(n for n in missing if n.islower())
        if missing:
            unmet.append(Unmet(d.strategy, missing))
        else:
            kept.append(d)
    return kept, unmet


def untrusted_lines(kb: KnowledgeBase, text: str, error_class: str) -> list[str]:
    """What untrusted import sources say about this error, which the ranking does not use."""
    lines = [
        f"  from untrusted source {e.source}, not used: {e.on_signature} outcomes on this "
        f"signature, {e.on_class} on class {error_class}"
        for e in kb.inert_evidence(text, error_class)
    ]
    for p in kb.patterns(trusted_only=False):
        if p.trusted:
            continue
        try:
            hit = re2.search(p.regex, text[-MAX_TEXT_CHARS:]) is not None
        except Exception:  # a pattern RE2 cannot run matches nothing
            hit = False
        if hit:
            lines.append(
                f"  pattern {p.name} from untrusted source {p.origin} matches "
                f"({p.error_class} -> {p.strategy}), not used"
            )
    return lines


@contextlib.contextmanager
def _open_text(name: str) -> Iterator[TextIO]:
    """Standard input for "-", else the regular file ``name`` (anything else: exit 2)."""
    if name == STDIN:
        yield sys.stdin
        return
    check_regular(name)
    try:
        stream = open(name, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _read_inputs(stream: TextIO, name: str) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{name}:{n}: not JSON ({exc.msg})") from None
        except RecursionError:  # far deeper than any {"id", "text"} line
            raise UsageError(f"{name}:{n}: lists and objects nested too deeply") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise UsageError(f'{name}:{n}: expected {{"id": ..., "text": "..."}}')
        yield str(item.get("id", n)), item["text"]


def _analysed(ranker: Ranker, items: list[tuple[str, str]]) -> Iterator[tuple[str, str, Analysis]]:
    """Each item with its analysis, batched (the ranker keeps a batch's analyses for detection)."""
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        analyses = ranker.analyze_many([text for _, text in batch])
        for (item_id, text), analysis in zip(batch, analyses, strict=True):
            yield item_id, text, analysis


@click.command("classify")
@click.option(
    "--input",
    "input_file",
    metavar="FILENAME",
    type=click.Path(allow_dash=True),
    help='JSONL file of {"id", "text"} lines ("-" for stdin). Without it: one text on stdin.',
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "table"]),
    default="jsonl",
    show_default=True,
    help="Output format.",
)
@click.option("--kb", "kb_url", help="Knowledge base URL or path (default location if omitted).")
@click.option(
    "--step",
    default="",
    help="Deployment step the errors came from: the strategies are listed in the order a "
    "deploy of that step would try them.",
)
def classify(input_file: str | None, fmt: str, kb_url: str | None, step: str) -> None:
    """Signature, error class scores and ranked strategies for each error text."""
    if input_file is None:
        items = [("stdin", sys.stdin.read())]
    else:
        with _open_text(input_file) as stream:
            items = list(_read_inputs(stream, "<stdin>" if input_file == STDIN else input_file))
    kb = open_knowledge(kb_url)
    ranker = compose.build_ranker(kb, explore=0.0)
    known = compose.strategies(kb)
    rows: list[dict[str, Any]] = []
    for item_id, text, analysis in _analysed(ranker, items):
        # the executor's own path: detect in the step, then the candidates in the order tried
        candidates = ranker.candidates(ranker.detect(step, text_result(text)))
        known_here, unmet = split_candidates(candidates, analysis.details, None, known)
        rows.append(
            {
                "id": item_id,
                "step": step,
                "signature": redact(analysis.signature),
                "error_class": analysis.error_class,
                "classes": [
                    {"name": c, "score": round(s, 4)}
                    for c, s in analysis.class_scores[: max(MIN_CLASSES, 5)]
                ],
                "strategies": [
                    {"name": c.strategy, "score": c.score, "why": c.why} for c in known_here
                ],
                "not_candidates": [
                    {"name": u.strategy, "needs": list(u.needs), "why": u.why} for u in unmet
                ],
            }
        )
    if fmt == "jsonl":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    from tabulate import tabulate

    table = [
        [
            r["id"],
            r["error_class"],
            f"{r['classes'][0]['score']:.2f}",
            r["strategies"][0]["name"] if r["strategies"] else "",
            (r["signature"].splitlines() or [""])[0][:70],
        ]
        for r in rows
    ]
    click.echo(tabulate(table, headers=["id", "class", "score", "first strategy", "signature"]))


@click.command("explain")
@click.argument("source", default=STDIN, type=click.Path(allow_dash=True))
@click.option("--kb", "kb_url", help="Knowledge base URL or path (default location if omitted).")
@click.option("--step", default="", help="Deployment step the error came from (context).")
@click.option(
    "--plan",
    "plan_spec",
    metavar="PLAN",
    help="The plan the error came from: strategies needing a variable it does not set are not "
    "candidates (without it only what the error must name is checked).",
)
def explain(source: str, kb_url: str | None, step: str, plan_spec: str | None) -> None:
    """Explain the ranking of one error text (FILE, or stdin with - / no argument)."""
    with _open_text(source) as stream:
        text = stream.read()
    if not text.strip():
        raise UsageError("no error text given")
    variables = dict(load_plan(plan_spec).env) if plan_spec is not None else None
    kb = open_knowledge(kb_url)
    ranker = compose.build_ranker(kb, explore=0.0)
    e = ranker.explain(text, step=step)
    candidates, unmet = split_candidates(e.candidates, e.details, variables, compose.strategies(kb))
    out = ["signature:"]
    out += ["  " + line for line in redact(e.signature).splitlines()] or ["  (empty)"]
    out.append(f"error class: {e.error_class}")
    out.append("class scores: " + ", ".join(f"{c} {s:.2f}" for c, s in e.class_scores[:5] if s > 0))
    out.append("rules matched:")
    if e.rule_hits:
        for h in e.rule_hits:
            kind = "custom" if h.custom else "built-in"
            out.append(
                f"  {h.rule} -> {h.error_class} (weight {h.weight:.2f}, {kind}): "
                f"{redact(h.matched)!r}"
            )
    else:
        out.append("  none (class from the text classifier)")
    if e.details:
        out.append("details: " + ", ".join(f"{k}={redact(v)}" for k, v in e.details.items()))
    out.append("neighbours:")
    if e.neighbours:
        for n in e.neighbours:
            tallies = ", ".join(
                f"{s} {ev.recovered:.1f} recovered/{ev.failed:.1f} failed"
                for s, ev in n.outcomes.items()
            )
            first = redact(n.signature).splitlines()[0][:80] if n.signature else ""
            out.append(f"  similarity {n.similarity:.0f} [{n.error_class}] {first!r}: {tallies}")
    else:
        out.append("  none in the knowledge base")
    out.append(
        f"other steps: an outcome there counts {e.other_steps:.0%} of one in this step "
        "(how often fixes have carried over between steps)"
    )
    out.append("candidates:")
    for i, d in enumerate(candidates, 1):
        out.append(
            f"  {i}. {d.strategy}  score {d.score:.3f}  risk {d.risk}  decided by {d.decided_by}"
            f"  level {d.level}"
        )
        out.append(f"     why: {d.why}")
    if unmet:
        out.append("not candidates (a recovery acts only on what the error or the plan names):")
        out.extend(f"  {u.strategy}: {u.why}" for u in unmet)
    inert = untrusted_lines(kb, text, e.error_class)
    if inert:
        out.append("untrusted knowledge (aideploy learn trust SOURCE to use it):")
        out.extend(inert)
    click.echo("\n".join(out))


@click.group("patterns")
def patterns() -> None:
    """Custom error patterns (regex -> error class -> recovery strategy)."""


@patterns.command("add")
@click.option("--name", required=True, help="Unique name of the pattern.")
@click.option("--pattern", "regex_", required=True, help="Regular expression (checked for safety).")
@click.option("--error-class", required=True, type=click.Choice(ERROR_CLASSES), help="Error class.")
@click.option("--recovery", required=True, help="Strategy to try first when it matches.")
@click.option("--severity", default="medium", type=click.Choice(SEVERITIES), show_default=True)
@click.option("--description", default="", help="Human-readable description.")
@click.option("--retry-count", default=3, type=click.IntRange(0, 20), show_default=True)
@click.option("--kb", "kb_url", help="Knowledge base URL or path (default location if omitted).")
def patterns_add(
    name: str,
    regex_: str,
    error_class: str,
    recovery: str,
    severity: str,
    description: str,
    retry_count: int,
    kb_url: str | None,
) -> None:
    """Validate a pattern and store it in the knowledge base."""
    pattern = ErrorPattern(
        name=name,
        pattern=regex_,
        error_class=error_class,
        recovery=recovery,
        severity=severity,
        description=description,
        retry_count=retry_count,
    )
    pattern.validate()
    kb = open_knowledge(kb_url)
    add = getattr(kb, "add_pattern", None)
    if add is None:
        raise KnowledgeBaseError("this knowledge base cannot store patterns")
    try:
        add(
            name,
            regex_,
            error_class,
            recovery,
            severity=severity,
            description=description,
            retry_count=retry_count,
        )
    except (ConfigError, KnowledgeBaseError):
        raise
    except Exception as exc:
        raise KnowledgeBaseError(f"cannot store pattern {name!r}: {exc}") from None
    click.echo(f"pattern {name!r} added ({error_class} -> {recovery})")


@patterns.command("list")
@click.option("--kb", "kb_url", help="Knowledge base URL or path (default location if omitted).")
@click.option("--json", "as_json", is_flag=True, help="Print the patterns as JSON (docs/json.md).")
def patterns_list(kb_url: str | None, as_json: bool) -> None:
    """List the custom patterns of the knowledge base."""
    kb = open_knowledge(kb_url, existing=True)
    rows_of = getattr(kb, "patterns", None)
    rows = list(rows_of(trusted_only=False)) if rows_of is not None else []
    if as_json:
        listed = []
        for row in rows:
            p = ErrorPattern.from_row(row)
            trusted = row.get("trusted") if isinstance(row, dict) else getattr(row, "trusted", None)
            listed.append(
                {
                    "name": p.name,
                    "error_class": p.error_class,
                    "recovery": p.recovery,
                    "severity": p.severity,
                    "trusted": bool(trusted),
                    "pattern": p.pattern,
                    "description": p.description,
                }
            )
        click.echo(json.dumps(listed, indent=2))
        return
    if not rows:
        click.echo("no custom patterns")
        return
    from tabulate import tabulate

    table = []
    for row in rows:
        p = ErrorPattern.from_row(row)
        trusted = row.get("trusted", "") if isinstance(row, dict) else getattr(row, "trusted", "")
        table.append([p.name, p.error_class, p.recovery, p.severity, trusted, p.pattern[:60]])
    click.echo(
        tabulate(table, headers=["name", "class", "recovery", "severity", "trusted", "pattern"])
    )
