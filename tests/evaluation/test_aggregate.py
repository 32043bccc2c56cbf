"""Several seeds summarised: mean and spread per cell, findings only beyond the spreads."""

import math
import statistics

import pytest

from dsm_lightning.evaluation.aggregate import (
    Cell,
    aggregate_runs,
    findings,
    format_cell,
    rank_agreement,
)

RUNS = [
    {"moco": {"acc": 0.20, "r1": 0.10}, "dsm": {"acc": 0.60, "r1": 0.12}},
    {"moco": {"acc": 0.30, "r1": 0.14}, "dsm": {"acc": 0.70, "r1": math.nan}},
    {"moco": {"acc": 0.25}, "dsm": {"acc": 0.65, "r1": 0.30}},
]


def test_cells_hold_mean_sample_sd_and_the_values_of_the_seeds_that_have_them():
    table = aggregate_runs(RUNS)
    acc = table["moco"]["acc"]
    assert acc.values == (0.20, 0.30, 0.25)
    assert acc.mean == pytest.approx(0.25) and acc.spread == pytest.approx(0.05)
    r1 = table["dsm"]["r1"]  # NaN left out, a seed without the metric left out
    assert r1.values == (0.12, 0.30) and r1.spread == pytest.approx(statistics.stdev([0.12, 0.3]))
    assert aggregate_runs(RUNS[:1])["moco"]["acc"] == Cell(0.20, 0.0, (0.20,))
    with pytest.raises(ValueError, match="at least one run"):
        aggregate_runs([])


def test_a_gap_is_a_finding_only_beyond_the_sum_of_the_spreads():
    table = aggregate_runs(RUNS)
    (acc,) = findings(table, "acc")  # gap 0.40 > 0.05 + 0.05
    assert (acc.higher, acc.lower) == ("dsm", "moco")
    assert acc.gap == pytest.approx(0.40) and acc.margin == pytest.approx(0.30)
    assert findings(table, "r1") == []  # gap 0.09 < 0.028 + 0.127: the seeds could make it
    close = aggregate_runs([{"a": {"m": 0.5}, "b": {"m": 0.6}}, {"a": {"m": 0.7}, "b": {"m": 0.6}}])
    assert findings(close, "m") == []
    assert findings(table, "acc", pairs=[("moco", "missing")]) == []


def test_rank_agreement_is_kendalls_tau():
    assert rank_agreement({"a": 1, "b": 2, "c": 3}, {"a": 10, "b": 20, "c": 30}) == 1.0
    assert rank_agreement({"a": 1, "b": 2, "c": 3}, {"a": 3, "b": 2, "c": 1}) == -1.0
    # one discordant pair of three: (2 - 1) / 3
    assert rank_agreement({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 3, "c": 2}) == pytest.approx(1 / 3)
    assert math.isnan(rank_agreement({"a": 1}, {"a": 2}))


def test_format_cell():
    assert format_cell(Cell(0.25, 0.05, (0.2, 0.3))) == "25.0 ± 5.0"
    assert format_cell(Cell(0.25, 0.0, (0.25,))) == "25.0"
    assert format_cell(None) == "-"
