"""The HTML report: self-contained, its plots real PNGs, its tables the report's numbers."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")

from aideploy.cli import learn_html as cli_html  # noqa: F401  (registers `learn report-html`)
from aideploy.cli.learn_html import write_html_report
from aideploy.cli.main import cli
from aideploy.knowledge.html_report import deployment_times, duration_summary
from aideploy.knowledge.report import SECTIONS, Filters, build_report
from aideploy.knowledge.store import KnowledgeBase
from tests.support.kbgen import Generated, copy_of_generated_kb

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA_PNG = "data:image/png;base64,"


@pytest.fixture
def generated(tmp_path: Path) -> Generated:
    return copy_of_generated_kb(tmp_path)


def _parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # the page is well-formed XML as well as HTML


def _text(el: ET.Element) -> str:
    return "".join(el.itertext()).strip()


def _table(root: ET.Element, name: str) -> tuple[list[str], list[list[str]]]:
    table = root.find(f".//table[@id='section-{name}']")
    assert table is not None, f"no table for {name}"
    headers = [_text(th) for th in table.iter("th")]
    rows = [[_text(td) for td in tr.iter("td")] for tr in table.find("tbody") or []]
    return headers, rows


def _expected(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("rate"):
        return f"{value * 100:.1f}%"
    if key == "mean_time_to_recovery":
        return f"{value:.1f} s"
    if key.endswith("_seconds"):
        return f"{value / 60:.1f} min"
    return str(value)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_page_is_self_contained_with_four_png_plots(generated: Generated, tmp_path: Path) -> None:
    with KnowledgeBase.open(generated.path) as kb:
        out = write_html_report(kb, tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html"
    root = _parse(out)
    images = [img.get("src", "") for img in root.iter("img")]
    pngs = [src for src in images if src.startswith(DATA_PNG)]
    assert len(pngs) >= 4
    for src in pngs:
        width, height = _png_size(base64.b64decode(src[len(DATA_PNG) :], validate=True))
        assert width > 200 and height > 100
    # nothing fetched from elsewhere
    assert all(src.startswith("data:") for src in images)
    assert not list(root.iter("link")) and not list(root.iter("script"))
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    ids = {fig.get("id") for fig in root.iter("figure")}
    assert {"plot-strategies", "plot-learning-curve", "plot-error-classes", "plot-durations"} <= ids


def test_tables_match_the_report_data(generated: Generated, tmp_path: Path) -> None:
    with KnowledgeBase.open(generated.path) as kb:
        out = write_html_report(kb, tmp_path / "report.html")
        report = build_report(kb)
        times = deployment_times(kb)
    root = _parse(out)
    for name in SECTIONS:
        rows = report.sections[name]
        assert rows, f"the generated KB has {name}"
        headers, cells = _table(root, name)
        assert headers == [k.replace("_", " ") for k in rows[0]]
        assert len(cells) == len(rows)
        for row, shown in zip(rows, cells, strict=True):
            assert shown == [_expected(k, v) for k, v in row.items()], name
    # the generator's own counts
    assert sum(r["deployments"] for r in report.sections["deployments"]) == generated.deployments
    assert sum(r["succeeded"] for r in report.sections["deployments"]) == generated.succeeded
    _, durations = _table(root, "durations")
    summary = duration_summary(times)
    assert [row[:2] for row in durations] == [[r["status"], str(r["deployments"])] for r in summary]
    by_status = {r["status"]: r["deployments"] for r in summary}
    assert by_status == {"succeeded": generated.succeeded, "failed": generated.failed}
    assert sum(1 for t in times if t.seconds is None) == generated.running == 1


def test_generated_history_learns(generated: Generated) -> None:
    with KnowledgeBase.open(generated.path) as kb:
        curve = [r["first_try_rate"] for r in build_report(kb).sections["first_try"]]
    assert len(curve) >= 6
    early, late = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
    assert late > early + 0.15, curve


def test_filters_are_applied(generated: Generated, tmp_path: Path) -> None:
    with KnowledgeBase.open(generated.path) as kb:
        out = write_html_report(
            kb, tmp_path / "prod.html", profile="production", since="2025-03-17"
        )
        production = deployment_times(kb, Filters(profile="production"))
        recent = deployment_times(kb, Filters(profile="production", since=datetime(2025, 3, 17)))
    root = _parse(out)
    _, weeks = _table(root, "deployments")
    assert 0 < sum(int(row[1]) for row in weeks) == len(recent) < len(production)
    assert all(row[0] >= "2025-03-17" for row in weeks)
    assert "profile production" in out.read_text(encoding="utf-8")


def test_values_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "kb.db"
    with KnowledgeBase.open(path) as kb:
        kb.start_deployment("x1", "<b>prof</b>", "web1", "stack")
        kb.record_attempt(
            "x1",
            'error: <script>alert("owned")</script> failed & gone',
            "unknown",
            "retry_<i>with</i>_backoff",
            "build",
            "failed",
            1.0,
        )
        kb.finish_deployment("x1", "failed")
        out = write_html_report(kb, tmp_path / "r.html", profile="<b>prof</b>")
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "<b>prof" not in page and "<i>" not in page
    assert "&lt;b&gt;prof&lt;/b&gt;" in page  # the filter, shown
    assert "&lt;script&gt;" in page and "retry_&lt;i&gt;with&lt;/i&gt;_backoff" in page
    assert "&amp; gone" in page
    _parse(out)


def test_empty_knowledge_base(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "empty.db") as kb:
        out = write_html_report(kb, tmp_path / "empty.html")
    root = _parse(out)
    assert sum(1 for img in root.iter("img") if img.get("src", "").startswith(DATA_PNG)) == 4
    assert "nothing recorded yet" in out.read_text(encoding="utf-8")


def test_command(generated: Generated, tmp_path: Path) -> None:
    target = tmp_path / "cli.html"
    result = CliRunner().invoke(
        cli,
        ["learn", "report-html", str(target), "--kb", str(generated.path), "--host", "nowhere"],
    )
    assert result.exit_code == 0, result.output
    root = _parse(target)
    assert len([i for i in root.iter("img")]) == 4
    assert root.find(".//p[@id='section-deployments']") is not None  # nothing for that host
    bad = CliRunner().invoke(
        cli, ["learn", "report-html", str(target), "--kb", str(generated.path), "--since", "x"]
    )
    assert bad.exit_code != 0
