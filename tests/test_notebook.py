"""The notebook runs top to bottom (nbclient) on the shipped runs, and is committed without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "position_curves.ipynb"
KERNEL = "val-probing-test-venv"


def test_committed_without_outputs() -> None:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert not any("%matplotlib" in "".join(c["source"]) for c in code)  # figures display without it


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that runs THIS interpreter (the venv's), found first through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def _text(cell: dict) -> str:
    parts = []
    for out in cell["outputs"]:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/markdown", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def _run_with_curves(venv_kernel: str) -> list:
    """Execute the notebook from its folder; check no cell failed and the curves were drawn."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=venv_kernel, timeout=180, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not [o for o in c.outputs if o.output_type == "error"] for c in code)
    curves = next(c for c in code if "plot_position_curves(results" in c.source)
    assert any("image/png" in o.get("data", {}) for o in curves.outputs)
    return code


def test_notebook_defaults_to_the_shipped_embedded_run(
    venv_kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from val_probing.results import load_results
    from val_probing.tables import table_rows, to_markdown

    monkeypatch.delenv("VAL_PROBING_RUNS", raising=False)
    code = _run_with_curves(venv_kernel)
    table = next(c for c in code if "display(Markdown(to_markdown" in c.source)
    embedded = NOTEBOOK.parent.parent / "tests" / "data" / "runs" / "embedded"
    expected = to_markdown(table_rows(load_results([embedded])))
    assert "SmolLM2-135M-Instruct" in expected and expected.strip() in _text(table)
    heat = next(c for c in code if "heatmap_models(results, task)" in c.source)
    assert "no model has results at two or more context lengths" in _text(heat)
    # the quick-start cells, exactly as a user types them
    frame = next(c for c in code if c.source == 'results_frame(load_results("tests/data/runs/embedded"))')
    assert any("text/html" in o.get("data", {}) for o in frame.outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in frame.outputs)
    assert html.split("<tbody>")[1].count("<tr>") == 3 * 8  # tasks x buckets
    plot = next(
        c for c in code if c.source == 'plot_position_curves(load_results("tests/data/runs/embedded"))'
    )
    assert sum("image/png" in o.get("data", {}) for o in plot.outputs) == 1  # shown once, no magic
    composed = next(c for c in code if "ax=left" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in composed.outputs) == 1


def test_notebook_runs_on_the_synthetic_runs(venv_kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = NOTEBOOK.parent.parent / "tests" / "data" / "runs"
    monkeypatch.setenv("VAL_PROBING_RUNS", f"{runs / 'synthetic'}{os.pathsep}{runs / 'lengths'}")
    code = _run_with_curves(venv_kernel)
    table = next(c for c in code if "display(Markdown(to_markdown" in c.source)
    assert "| u-model | 4K |" in _text(table) and "| flat-model | 4K |" in _text(table)
    gaps = next(c for c in code if "within noise" in c.source)
    assert "u-model" in _text(gaps) and "a real dip" in _text(gaps)
    heat = next(c for c in code if "heatmap_models(results, task)" in c.source)
    assert sum("image/png" in o.get("data", {}) for o in heat.outputs) == 1  # document only
    assert "| u-model | Document | < 1K |" in _text(heat)  # the effective length, default thresholds


def test_notebook_reads_the_runs_the_user_sets(
    venv_kernel: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    score = Path(__file__).resolve().parent / "data" / "score" / "mistral-like_document.json"
    monkeypatch.setenv("VAL_PROBING_RUNS", str(score))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name=venv_kernel, timeout=180, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    table = next(c for c in nb.cells if c.cell_type == "code" and "display(Markdown(to_markdown" in c.source)
    assert "| mistral-like |" in _text(table) and "u-model" not in _text(table)
