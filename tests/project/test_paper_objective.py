"""experiments/paper_objective/search.py: the search over the paper objective's suspected
failure causes runs end to end (--fast: tiny data, one epoch) and records every figure the
docs tabulate; its results file holds every run docs/method-fidelity.md lists."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "paper_objective" / "search.py"


@pytest.fixture(scope="module")
def search():
    spec = importlib.util.spec_from_file_location("paper_objective_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("paper_objective_variants", None)


def test_fast_run_records_every_figure(search, tmp_path, monkeypatch):
    monkeypatch.setenv("DSM_LIGHTNING_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["search.py"])
    out = tmp_path / "results.json"
    results = search.main(["--fast", "--only", "c1_joint_pass", "--out", str(tmp_path / "runs"),
                           "--results", str(out)])
    figures = results["c1_joint_pass"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    for key in ("hn_acc", "pos_logit", "neg_logit", "contrasted"):
        assert 0.0 <= abs(figures[key]) <= 1.0, key
    diagnostic = figures["diagnostic"]
    for mode in ("train", "eval"):
        for key in ("q_g_pos", "q_f_pos", "q_f_neg", "hn_acc_g", "hn_acc_f"):
            assert -1.0 <= diagnostic[f"{mode}/{key}"] <= 1.0
    assert figures["command"].endswith("--only c1_joint_pass --epochs 1")


def test_every_run_keeps_the_paper_loss_unless_it_says_otherwise(search):
    """Each run starts from the paper's settings and changes what its description says."""
    from dsm_lightning import DSMLightningModule, TripletBuilder

    paper_model = {**DSMLightningModule.paper_settings(), **search.BACKBONE}
    for name, run in search.RUNS.items():
        changed = {k for k, v in run["model"].items()
                   if k not in paper_model or search._plain({k: paper_model[k]})[k] != v}
        if "hard_negative_weight" in changed:
            assert "not the paper's loss" in run["description"], name
        assert run["augment"]["point_direction"] == TripletBuilder.paper_settings()[
            "point_direction"] or "warp" in run["description"], name


def test_results_file_lists_the_documented_runs(search):
    results = json.loads((SCRIPT.parent / "results.json").read_text())
    doc = (ROOT / "docs" / "method-fidelity.md").read_text()
    assert results, "the search has not been run"
    for name, figures in results.items():
        assert name in search.RUNS and not figures["fast"], name
        assert f"`{name}`" in doc, f"{name} is not tabulated in docs/method-fidelity.md"
