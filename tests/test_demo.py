"""`make demo` end to end at smoke size: every number of the table is measured and written."""

from __future__ import annotations

import json

import pytest

from dsm_lightning.demo import ROWS, DemoConfig, format_comparison, parse_args, run_demo


@pytest.mark.slow
def test_demo_fast_run_writes_a_complete_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, as `make demo` uses them
    cfg = parse_args(["--fast", "--out-dir", "demo", "--cache-dir", "cache"])
    report = run_demo(cfg)
    out = capsys.readouterr().out
    assert set(report["results"]) == {"random", "dsm", "moco"}
    for name, metrics in report["results"].items():
        for key, _ in ROWS:
            assert 0.0 <= metrics[key] <= 1.0 or key == "scene_bias/gain", (name, key)
        # contrasted accuracy can never exceed the normal-clip accuracy it is part of
        assert metrics["balanced_probe/contrasted"] <= metrics["balanced_probe/test"] + 1e-9
        recalls = [metrics[f"retrieval/balanced_test/R@{k}"] for k in (1, 5, 10)]
        assert recalls == sorted(recalls)
    written = json.loads((tmp_path / "demo" / "report.json").read_text())
    for name, metrics in report["results"].items():
        assert written["results"][name] == pytest.approx(metrics)
    for method in ("dsm", "moco"):
        assert (tmp_path / "demo" / method / "encoder.pt").is_file()
        assert (tmp_path / "demo" / method / "last.ckpt").is_file()
        assert (tmp_path / "demo" / f"scene_bias_{method}.png").is_file()
    assert "balanced probe: contrasted acc (main)" in out and "dsm" in out and "moco" in out


def test_parse_args_covers_every_setting_and_keeps_types():
    cfg = parse_args(["--epochs", "3", "--negative-kinds", "reverse", "static",
                      "--no-random-baseline", "--proj-hidden-dim", "64"])
    assert cfg.epochs == 3 and cfg.negative_kinds == ("reverse", "static")
    assert cfg.random_baseline is False and cfg.proj_hidden_dim == 64
    assert parse_args([]) == DemoConfig()


def test_comparison_table_shows_every_row_in_percent():
    results = {name: {key: 0.25 for key, _ in ROWS} for name in ("dsm", "moco")}
    table = format_comparison(results, chance=0.125)
    assert table.count("25.0") == 2 * len(ROWS)
    assert "chance level 12.5%" in table
