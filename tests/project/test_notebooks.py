"""The notebooks run end to end in smoke mode, in a kernel of this interpreter, and their
rendered copies (notebooks/rendered/) are of the current notebooks.

Each notebook reads ``DSM_SMOKE=1`` (seconds-long settings, ``dsm_lightning.cli_parser``) and
writes under ``outputs/<notebook>/`` in its working directory, here the ``notebooks/`` folder
of a checkout copy (as ``jupyter lab notebooks/`` runs it); the synthetic videos go to
``DSM_LIGHTNING_CACHE``. The notebooks assert their own claims (e.g. the positive's frame
differences equal the warped anchor's), so an execution error fails the test; the checks
here cover what they write and display. By hand: ``DSM_SMOKE=1 pytest --nbmake notebooks/``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from helpers.walk import checkout_copy
from nbclient import NotebookClient
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
RENDERED = NOTEBOOK_DIR / "rendered"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = ["01_triplets", "02_pretrain_and_probe", "03_retrieval_and_scene_bias"]


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-video cache for the whole session (the examples' tests use the same)."""
    return tmp_path_factory.getbasetemp() / "dsm_synthetic_cache"


def _execute(path: Path, cwd: Path, cache: Path, monkeypatch) -> tuple[dict, float]:
    """Run a notebook in smoke mode from ``cwd``; return the executed notebook and wall time."""
    monkeypatch.setenv("DSM_SMOKE", "1")
    monkeypatch.setenv("DSM_LIGHTNING_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    # Last cell: report the kernel's interpreter (must be this test's, i.e. the venv's).
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL', sys.executable)"))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
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


def test_rendered_copies_show_the_current_notebooks_with_their_outputs():
    total = 0
    for path in NOTEBOOKS:
        page = RENDERED / f"{path.stem}.md"
        text = page.read_text()
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:  # a notebook edited since its rendering fails here
            assert cell.source.strip() in text, f"{page.name} is stale: re-run make notebooks"
        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        assert images, f"{page.name} shows no output image"
        for image in images:
            assert (RENDERED / image).is_file(), image
        assert "smoke=True" not in text and "smoke mode (DSM_SMOKE=1)" not in text
    total = sum(f.stat().st_size for f in RENDERED.rglob("*") if f.is_file())
    assert total < 2_000_000, f"rendered copies take {total} bytes"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_smoke_mode(name, tmp_path, synthetic_cache, monkeypatch):
    cwd = checkout_copy(tmp_path / "clone") / "notebooks"
    nb, seconds = _execute(cwd / f"{name}.ipynb", cwd, synthetic_cache, monkeypatch)
    text = "".join(_outputs(nb, "text"))
    assert f"KERNEL {sys.executable}" in text  # the venv's interpreter, not another python
    assert _outputs(nb, "image/png"), "the notebook displays no image"
    out = cwd / "outputs" / name
    print(f"{name}: {seconds:.1f} s")

    if name == "01_triplets":
        gifs = sorted(out.glob("triplet_*.gif"))
        assert len(gifs) == 4  # 2 real + 2 synthetic clips
        with Image.open(gifs[0]) as gif:
            assert gif.n_frames == 8 and gif.size[0] > 3 * gif.size[1]  # 3 clips side by side
        assert _outputs(nb, "image/gif"), "the GIF is not displayed"
        assert "warp(danchor, field)" in text and "frames from anchor" in text

    if name == "02_pretrain_and_probe":
        assert "[dsm] smoke mode (DSM_SMOKE=1)" in text
        for method in ("moco", "dsm_intra"):
            with open(out / method / "metrics.csv", newline="") as handle:
                rows = list(csv.DictReader(handle))
            assert any(row.get("train/loss_step") for row in rows)
            has_hn = any(row.get("train/hn_acc_step") for row in rows)
            assert has_hn == (method == "dsm_intra")  # MoCo has no hard negative to score
            assert (out / method / "encoder.pt").is_file()
        table = json.loads((out / "results.json").read_text())
        assert set(table) == {"random", "moco", "dsm_intra"}
        for scores in table.values():
            assert "balanced_probe/contrasted" in scores
            assert all(0.0 <= v <= 1.0 or math.isnan(v) or k == "scene_bias/gain"
                       for k, v in scores.items())
        assert "balanced probe: contrasted acc (main)" in text

    if name == "03_retrieval_and_scene_bias":
        assert (out / "dsm_intra" / "encoder.pt").is_file()  # notebook 2 did not run here
        for png in ("neighbours.png", "scene_bias_dsm.png", "grad_cam.png"):
            with Image.open(out / png) as image:
                assert image.size[0] > 100 and image.size[1] > 100
        report = json.loads((out / "scene_bias_dsm.json").read_text())
        assert len(report["per_class_normal"]) == len(report["class_names"])
