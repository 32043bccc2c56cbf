"""The study's reports: one run's table, several seeds' mean ± spread and findings, and the
suite's verdicts per source (``report.md`` / ``report.json`` in each output folder)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dsm_lightning.evaluation.aggregate import (
    Cell,
    aggregate_runs,
    findings,
    format_cell,
    rank_agreement,
)
from dsm_lightning.evaluation.study import format_study_table, study_rows

__all__ = ["KEY_METRICS", "REFERENCE", "key_metrics", "aggregate_report", "run_report", "suite_report",
           "write_report"]

#: The encoder the findings compare every other one with (the MoCo baseline), when present.
REFERENCE = "moco"
#: The metrics the findings and verdicts are about, when a run has them: the real splits'
#: contrasted accuracy, swapped-scene top-1 and retrieval, then per synthesized background
#: kind ``{kind}`` its contrasted accuracy, swap top-1, conflict and retrieval.
KEY_METRICS = (
    "balanced_probe/contrasted", "biased_probe/swapped_test", "retrieval/swapped_test/R@1",
    "ooc/{kind}/contrasted", "ooc/{kind}/swap", "ooc/{kind}/conflict_moving_beats_still",
    "retrieval/ooc_{kind}/R@1",
)


def key_metrics(keys: Iterable[str]) -> list[str]:
    """The :data:`KEY_METRICS` present among ``keys``, a synthesized one per kind found."""
    present = set(keys)
    kinds = list(dict.fromkeys(k.split("/")[1] for k in sorted(present)
                               if k.startswith("ooc/")))
    out = []
    for metric in KEY_METRICS:
        names = [metric.format(kind=k) for k in kinds] if "{kind}" in metric else [metric]
        out += [name for name in names if name in present]
    return out


def _agreements(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Kendall's tau between the real scene-swapped split and each synthesized swap, over
    the encoders (does the synthesized test rank the methods as the real one does?)."""
    real = {n: r["biased_probe/swapped_test"] for n, r in results.items()
            if "biased_probe/swapped_test" in r}
    out = {}
    kinds = sorted({k.split("/")[1] for r in results.values() for k in r if k.startswith("ooc/")})
    for kind in kinds:
        synthesized = {n: r[f"ooc/{kind}/swap"] for n, r in results.items()
                       if f"ooc/{kind}/swap" in r}
        tau = rank_agreement(real, synthesized)
        if not math.isnan(tau):
            out[kind] = tau
    return out


def run_report(results: Mapping[str, Mapping[str, float]], chance: float, legend: str,
               notes: Mapping[str, Any], seconds: Mapping[str, float]) -> str:
    """The Markdown report of one run (one data section, one seed)."""
    table = format_study_table(results, chance=chance)
    lines = ["# dsm-lightning scene-bias study", "", "```", table, "```", ""]
    if legend:
        lines += [legend, ""]
    if notes.get("backgrounds"):
        lines.append(f"Synthesized tests: split `{notes['synthesized_split']}`, backgrounds "
                     f"{', '.join(notes['backgrounds'])}, masks {notes['masks']}.")
    if notes.get("examples"):
        lines += ["", "What was tested (rows: swap, static copy, conflict; columns: frames):", ""]
        lines += [f"![{Path(path).stem}]({path})" for path in notes["examples"]]
        lines.append("")
    if notes.get("mask_iou") is not None:
        lines.append(f"Foreground estimate (FAME motion saliency) vs the source's true masks: "
                     f"mean IoU {notes['mask_iou']:.3f}.")
    for kind, tau in _agreements(results).items():
        lines.append(f"Synthesized swap ({kind}) vs the real scene-swapped split: Kendall's "
                     f"tau {tau:+.2f} over the encoders' top-1 (1 = the same ranking).")
    timing = ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items())
    if timing:
        lines += ["", f"pretraining wall time: {timing}"]
    return "\n".join(lines) + "\n"


def _table(cells: Mapping[str, Mapping[str, Cell]], keys: Sequence[tuple[str, str]]) -> str:
    names = list(cells)
    width = max(len(label) for _, label in keys) + 2
    col = max(14, *(len(n) + 2 for n in names))
    head = f"{'metric (%)':<{width}}" + "".join(f"{n:>{col}}" for n in names)
    rows = [head, "-" * len(head)]
    for key, label in keys:
        rows.append(f"{label:<{width}}"
                    + "".join(f"{format_cell(cells[n].get(key)):>{col}}" for n in names))
    return "\n".join(rows)


def _findings_lines(cells: Mapping[str, Mapping[str, Cell]]) -> list[str]:
    lines = []
    if REFERENCE not in cells:
        return lines
    for metric in key_metrics(k for c in cells.values() for k in c):
        pairs = [(name, REFERENCE) for name in cells if name != REFERENCE]
        for f in findings(cells, metric, pairs):
            lines.append(f"- `{metric}`: {f.higher} above {f.lower} by {100 * f.gap:.1f} points "
                         f"({100 * f.margin:.1f} beyond the two spreads)")
    return lines


def aggregate_report(runs: Sequence[Mapping[str, Mapping[str, float]]], seeds: Sequence[int],
                     title: str) -> tuple[str, dict[str, dict[str, Cell]]]:
    """Mean ± spread over the seeds, and the findings against the baseline.

    Returns:
        ``(markdown, {encoder: {metric: Cell}})``.
    """
    cells = aggregate_runs(runs)
    keys = study_rows(key for r in cells.values() for key in r)
    lines = [f"# {title}", "", f"Seeds {', '.join(map(str, seeds))}: mean ± sample standard "
             "deviation over the seeds, in %.", "", "```", _table(cells, keys), "```", ""]
    found = _findings_lines(cells)
    lines += ["Findings (a gap to the baseline larger than the two spreads together):", ""]
    lines += found or ["- none: every gap to the baseline is within the seeds' spread"]
    return "\n".join(lines) + "\n", cells


def _verdict(per_source: Mapping[str, Mapping[str, Mapping[str, Cell]]], name: str,
             metric: str) -> str:
    """``above on 3/3``, ``below on 1/3, no finding on 2/3``, ...: vs the baseline."""
    counts = {"above": 0, "below": 0, "no finding": 0}
    total = 0
    for cells in per_source.values():
        if metric not in cells.get(name, {}) or metric not in cells.get(REFERENCE, {}):
            continue
        total += 1
        (found,) = findings(cells, metric, [(name, REFERENCE)]) or (None,)
        counts["no finding" if found is None else
               ("above" if found.higher == name else "below")] += 1
    if not total:
        return "-"
    return ", ".join(f"{k} on {v}/{total}" for k, v in counts.items() if v)


def suite_report(per_source: Mapping[str, Mapping[str, Mapping[str, Cell]]],
                 seeds: Sequence[int]) -> str:
    """The verdicts over the suite: for each encoder and key metric, against the baseline,
    on how many sources the gap is a finding above, below, or none."""
    names = list(dict.fromkeys(n for cells in per_source.values() for n in cells))
    metrics = key_metrics(k for cells in per_source.values() for c in cells.values() for k in c)
    lines = ["# dsm-lightning scene-bias study: the suite", "",
             f"Sources: {', '.join(per_source)}; seeds {', '.join(map(str, seeds))} each. "
             f"Each cell: against `{REFERENCE}`, on how many sources the mean gap exceeds the "
             "two seeds' spreads (above / below) or not (no finding).", ""]
    for metric in metrics:
        lines += [f"## `{metric}`", "", "| encoder | verdict | "
                  + " | ".join(per_source) + " |",
                  "|---|---|" + "---|" * len(per_source)]
        for name in names:
            if name == REFERENCE:
                continue
            values = [format_cell(cells.get(name, {}).get(metric))
                      for cells in per_source.values()]
            lines.append(f"| {name} | {_verdict(per_source, name, metric)} | "
                         + " | ".join(values) + " |")
        base = [format_cell(cells.get(REFERENCE, {}).get(metric))
                for cells in per_source.values()]
        lines += [f"| {REFERENCE} (baseline) | - | " + " | ".join(base) + " |", ""]
    return "\n".join(lines) + "\n"


def write_report(out: Path, markdown: str, data: Mapping[str, Any]) -> None:
    """``report.md`` and ``report.json`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown)
    (out / "report.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
