"""The notebooks run end to end with small settings, in a kernel of this interpreter.

Each notebook reads ``DSM_NOTEBOOK_FAST=1`` (seconds-long settings) and writes under
``DSM_NOTEBOOK_OUT``; the synthetic videos go to ``DSM_LIGHTNING_CACHE``. The notebooks assert
their own claims (e.g. the positive's frame differences equal the warped anchor's), so an
execution error fails the test; the checks here cover what they write and display.
By hand: ``DSM_NOTEBOOK_FAST=1 pytest --nbmake notebooks/``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_triplets", "02_pretrain_and_probe", "03_retrieval_and_scene_bias"]


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-video cache for the whole session (examples' tests use the same)."""
    return tmp_path_factory.getbasetemp() / "dsm_synthetic_cache"


def _execute(path: Path, out_dir: Path, cache: Path, monkeypatch) -> tuple[dict, float]:
    """Run a notebook in fast mode; return the executed notebook and the wall time."""
    monkeypatch.setenv("DSM_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("DSM_NOTEBOOK_OUT", str(out_dir))
    monkeypatch.setenv("DSM_LIGHTNING_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    # Last cell: report the kernel's interpreter (must be this test's, i.e. the venv's).
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL', sys.executable)"))
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def _outputs(nb: dict, kind: str) -> list:
    """Every output payload of a MIME type (``text`` gathers the stream text)."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if kind == "text" and output.get("output_type") == "stream":
                found.append(output["text"])
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


def test_the_three_notebooks_exist_and_are_committed_without_outputs():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_fast_mode(name, tmp_path, synthetic_cache, monkeypatch):
    nb, seconds = _execute(NOTEBOOK_DIR / f"{name}.ipynb", tmp_path, synthetic_cache,
                           monkeypatch)
    text = "".join(_outputs(nb, "text"))
    assert f"KERNEL {sys.executable}" in text  # the venv's interpreter, not another python
    assert _outputs(nb, "image/png"), "the notebook displays no image"
    out = tmp_path / name
    print(f"{name}: {seconds:.1f} s")

    if name == "01_triplets":
        gifs = sorted(out.glob("triplet_*.gif"))
        assert len(gifs) == 4  # 2 real + 2 synthetic clips
        with Image.open(gifs[0]) as gif:
            assert gif.n_frames == 8 and gif.size[0] > 3 * gif.size[1]  # 3 clips side by side
        assert _outputs(nb, "image/gif"), "the GIF is not displayed"
        assert "warp(danchor, field)" in text and "frames from anchor" in text

    if name == "02_pretrain_and_probe":
        for method in ("dsm", "moco"):
            with open(out / method / "metrics.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            assert any(row.get("train/loss_step") for row in rows)
            has_hn = any(row.get("train/hn_acc_step") for row in rows)
            assert has_hn == (method == "dsm")  # MoCo has no hard negative to score
        table = json.loads((out / "results.json").read_text())
        assert set(table) == {"random", "moco", "dsm"}
        for scores in table.values():
            assert all(0.0 <= value <= 1.0 for value in scores.values())

    if name == "03_retrieval_and_scene_bias":
        for png in ("neighbours.png", "scene_bias_dsm.png", "grad_cam.png"):
            with Image.open(out / png) as image:
                assert image.size[0] > 100 and image.size[1] > 100
        report = json.loads((out / "scene_bias_dsm.json").read_text())
        assert len(report["per_class_normal"]) == len(report["class_names"])
