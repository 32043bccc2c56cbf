"""Several seeds of a study, summarised: mean and spread per cell, and which gaps are findings.

Plain Python. A study run gives, per encoder, ``{metric: value}``; several runs (seeds) of
the same study give one such table each. Per cell this module reports the mean over the
seeds and the spread (the sample standard deviation; 0 for a single seed), and it calls a
gap between two encoders on a metric a *finding* only when it exceeds the sum of their
spreads (``|mean_a - mean_b| > sd_a + sd_b``): a difference that the seeds alone could
make is not reported as one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import NamedTuple

__all__ = ["Cell", "Finding", "aggregate_runs", "findings", "format_cell", "rank_agreement"]


class Cell(NamedTuple):
    """One metric of one encoder over the seeds.

    Attributes:
        mean: mean over the seeds that have the metric.
        spread: sample standard deviation over them (0.0 for one seed).
        values: the per-seed values, in seed order.
    """

    mean: float
    spread: float
    values: tuple[float, ...]


class Finding(NamedTuple):
    """A gap between two encoders on one metric that exceeds their spreads.

    Attributes:
        metric: the metric's key.
        higher: the encoder with the larger mean.
        lower: the other encoder.
        gap: ``mean(higher) - mean(lower)`` (> ``spread(higher) + spread(lower)``).
        margin: ``gap - spread(higher) - spread(lower)``.
    """

    metric: str
    higher: str
    lower: str
    gap: float
    margin: float


def aggregate_runs(
    runs: Sequence[Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, Cell]]:
    """Mean and spread of every (encoder, metric) over the runs (one run per seed).

    Args:
        runs: one ``{encoder: {metric: value}}`` per seed; NaN values are left out.

    Returns:
        ``{encoder: {metric: Cell}}`` over the encoders and metrics of any run.

    Raises:
        ValueError: no run.
    """
    if not runs:
        raise ValueError("aggregate_runs needs at least one run")
    encoders = list(dict.fromkeys(name for run in runs for name in run))
    out: dict[str, dict[str, Cell]] = {}
    for name in encoders:
        metrics = list(dict.fromkeys(m for run in runs for m in run.get(name, {})))
        cells = {}
        for metric in metrics:
            values = tuple(float(run[name][metric]) for run in runs
                           if metric in run.get(name, {})
                           and not math.isnan(float(run[name][metric])))
            if values:
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells[metric] = Cell(statistics.fmean(values), spread, values)
        out[name] = cells
    return out


def findings(
    table: Mapping[str, Mapping[str, Cell]], metric: str,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[Finding]:
    """The gaps on ``metric`` that exceed the two encoders' spreads.

    Args:
        table: output of :func:`aggregate_runs`.
        metric: the metric's key.
        pairs: the encoder pairs to compare (None: every pair having the metric).

    Returns:
        The findings, largest margin first.
    """
    names = [n for n in table if metric in table[n]]
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    out = []
    for a, b in pairs:
        if metric not in table.get(a, {}) or metric not in table.get(b, {}):
            continue
        ca, cb = table[a][metric], table[b][metric]
        high, low = (a, b) if ca.mean >= cb.mean else (b, a)
        gap = abs(ca.mean - cb.mean)
        margin = gap - ca.spread - cb.spread
        if margin > 0:
            out.append(Finding(metric, high, low, gap, margin))
    return sorted(out, key=lambda f: -f.margin)


def rank_agreement(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Kendall's tau between two scorings of the same encoders (1: the same order).

    Pairs tied in either scoring count as neither concordant nor discordant (tau-a over the
    untied pairs); NaN when fewer than two encoders are scored by both.
    """
    names = [n for n in a if n in b and not math.isnan(a[n]) and not math.isnan(b[n])]
    concordant = discordant = 0
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            sign = (a[x] - a[y]) * (b[x] - b[y])
            concordant += sign > 0
            discordant += sign < 0
    total = concordant + discordant
    return (concordant - discordant) / total if total else math.nan


def format_cell(cell: Cell | None, scale: float = 100.0) -> str:
    """``"mean ± spread"`` in percent (one decimal), ``"-"`` for a missing cell; a single
    seed shows the mean only."""
    if cell is None:
        return "-"
    if len(cell.values) < 2:
        return f"{scale * cell.mean:.1f}"
    return f"{scale * cell.mean:.1f} ± {scale * cell.spread:.1f}"
