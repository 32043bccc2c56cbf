"""The benchmark suite runs end to end in quick mode and emits well-formed rows.

Speed is not checked (the figures are not meaningful at quick sizes); what is checked is
that every benchmark module runs, that ``benchmarks.run`` writes the JSON and markdown
files, and that every row carries the fields the README table is built from, with positive
finite figures and a ratio that is the quotient of the figures it reports.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds benchmarks/
from benchmarks import run as bench_run  # noqa: E402

EXPECTED = {
    "bench_data": {"data_train_loader_classify", "data_train_loader_pretrain"},
    "bench_disturb": {"be_vs_dsm_triplet", "fame_vs_dsm_triplet", "be_on_dsm_vs_dsm_triplet"},
    "bench_ddp": {"ddp_2_vs_1_process"},
    "bench_gpu": {"gpu_triplet_build", "gpu_fed_vs_model_only", "gpu_loader_vs_step",
                  "gpu_memory_per_sample", "gpu_ddp_scaling"},
    "bench_memory": {"memory_rss_growth"},
    "bench_pretrain": {"pretrain_fed_vs_model_only"},
    "bench_shards": {"shards_vs_files_loader", "shards_prepare_per_video"},
    "bench_triplet": {"triplet_vs_naive_loop", "r3d18_step_over_triplet"},
}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = bench_run.main(["--quick", "--out", str(out)])
    rows = json.loads((out / "quick.json").read_text())
    return code, rows, out


@pytest.mark.timeout(420)  # the quick suite starts a few Lightning / DDP processes
def test_every_benchmark_runs_and_writes_results(quick_results):
    code, rows, out = quick_results
    assert code == 0
    assert set(bench_run.discover()) == set(EXPECTED)
    by_module: dict[str, set[str]] = {}
    for row in rows:
        by_module.setdefault(row["module"], set()).add(row["name"])
    assert by_module == EXPECTED
    table = (out / "quick.md").read_text()
    for row in rows:
        assert f"| {row['name']} |" in table
    assert json.loads((out / "quick.machine.json").read_text())["cpus"] >= 1


def test_rows_have_required_fields_and_sane_values(quick_results):
    _, rows, _ = quick_results
    for row in rows:
        name = row["name"]
        for key in ("name", "ratio", "goal", "what", "unit", "met", "module"):
            assert key in row, (name, key)
        assert isinstance(row["what"], str) and " vs " in row["what"], name
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, name
        assert row["goal"] is None or row["goal"] > 0, name
        assert row["met"] == (None if row["goal"] is None else row["ratio"] >= row["goal"])
        figures = {k: v for k, v in row.items() if k.startswith(("a_", "b_"))}
        assert len(figures) == 2, (name, figures)
        a, b = (figures[k] for k in sorted(figures))
        assert a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # higher-is-better quotient of the two raw figures, as documented in each module
        ("triplet_vs_naive_loop", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("r3d18_step_over_triplet", lambda r: r["a_s"] / r["b_s"]),
        ("data_train_loader_classify", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("pretrain_fed_vs_model_only", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("ddp_2_vs_1_process", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("memory_rss_growth", lambda r: 1.05 * r["a_mib"] / r["b_mib"]),
        ("fame_vs_dsm_triplet", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("shards_vs_files_loader", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("shards_prepare_per_video", lambda r: r["a_ms_per_video"] / r["b_ms_per_video"]),
        ("gpu_fed_vs_model_only", lambda r: r["a_per_s"] / r["b_per_s"]),
        ("gpu_memory_per_sample", lambda r: r["a_mib"] / r["b_mib_per_sample"]),
        ("gpu_ddp_scaling", lambda r: r["a_per_s"] / r["b_per_s"]),
    ],
)
def test_ratio_is_the_quotient_of_the_reported_figures(quick_results, name, expected):
    _, rows, _ = quick_results
    (row,) = [r for r in rows if r["name"] == name]
    assert row["ratio"] == pytest.approx(expected(row), rel=1e-9)


def test_gpu_rows_say_whether_gpu_figures_were_recorded(quick_results):
    """Without CUDA every GPU row is a marked CPU stand-in; with it, the card is named."""
    import torch

    _, rows, _ = quick_results
    gpu_rows = [r for r in rows if r["module"] == "bench_gpu"]
    for row in gpu_rows:
        assert row["gpu_figures"] is torch.cuda.is_available()
        if not row["gpu_figures"]:
            assert row["device"] == "cpu" and "no GPU figure recorded" in row["what"]
        else:
            assert row["device"] == torch.cuda.get_device_name(0)


def test_memory_row_reports_a_plausible_peak(quick_results):
    _, rows, _ = quick_results
    (row,) = [r for r in rows if r["name"] == "memory_rss_growth"]
    peaks = row["epoch_peak_rss_mib"]
    assert len(peaks) == 3
    # a Python process with torch and Lightning loaded holds well over 100 MiB
    assert all(100 < p <= row["peak_rss_mib"] + 1e-6 for p in peaks)
