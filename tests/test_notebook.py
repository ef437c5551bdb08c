"""notebooks/kb_analysis.ipynb runs, top to bottom, against a generated knowledge base."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from tests.support.kbgen import copy_of_generated_kb  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "kb_analysis.ipynb"
KERNEL = "aideploy-test-python"


def _kernel_spec(folder: Path) -> Path:
    """A kernel spec for this interpreter (the venv's), found through JUPYTER_PATH."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "aideploy tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    return folder


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("AIDEPLOY_KB" in c.source for c in code)


def test_notebook_executes_without_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generated = copy_of_generated_kb(tmp_path)
    monkeypatch.setenv("AIDEPLOY_KB", str(generated.path))
    monkeypatch.setenv("JUPYTER_PATH", str(_kernel_spec(tmp_path / "jupyter")))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # the four report plots and the per-class one
    text = "".join(o.text for o in outputs if o.output_type == "stream")
    assert str(generated.path) in text
    assert "wait_for_apt_lock" in text and "first_try_rate" in text
    assert f"{generated.running} deployment(s) without an end time" in text
