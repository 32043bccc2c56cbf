"""Run every benchmark in benchmarks/ and write results/latest.json and results/latest.md.

Usage: ``python -m benchmarks.run [--quick] [--only NAME ...] [--out DIR]``. Each
``benchmarks/bench_*.py`` exposes ``run(quick: bool) -> list[dict]``; every dict carries
``name``, ``ratio`` (measured, higher is better), ``goal`` (or None) and ``what``, plus the raw
figures. Ratios are measured side by side inside one process run; absolute times are context.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REQUIRED = ("name", "ratio", "goal", "what")
HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_*``) in this folder, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_"))


def machine() -> dict[str, Any]:
    """A short description of the machine the figures come from."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        )
    except ImportError:  # pragma: no cover
        pass
    return info


def validate(row: dict[str, Any], module: str) -> dict[str, Any]:
    """Check that a result row has the required fields; raise ValueError naming the module."""
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"benchmark {module} returned a row without {missing}: {row}")
    row = dict(row)
    row["met"] = None if row["goal"] is None else bool(row["ratio"] >= row["goal"])
    row["module"] = module
    return row


def to_markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """Render result rows as a markdown table preceded by the machine description."""
    lines = [
        f"Machine: {info.get('device', '?')}, {info.get('cpus', '?')} CPUs, "
        f"torch {info.get('torch', '?')}, Python {info.get('python', '?')}",
        "",
        "| benchmark | ratio | goal | met | what |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        goal = "report" if r["goal"] is None else f"{r['goal']:g}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"| {r['name']} | {r['ratio']:.3g} | {goal} | {met} | {r['what']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, write the JSON and markdown results, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks, not speed")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark module names")
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder")
    args = parser.parse_args(argv)
    names = args.only or discover()
    rows: list[dict[str, Any]] = []
    failures = 0
    for name in names:
        mod_name = name if name.startswith("bench_") else f"bench_{name}"
        start = time.perf_counter()
        print(f"[bench] {mod_name} ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{mod_name}")
            for row in module.run(quick=args.quick):
                rows.append(validate(row, mod_name))
        except Exception:  # keep the other benchmarks' figures
            failures += 1
            traceback.print_exc()
        print(f"[bench] {mod_name} done in {time.perf_counter() - start:.1f}s", flush=True)
    info = machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / f"{stem}.md").write_text(to_markdown(rows, info))
    (out / f"{stem}.machine.json").write_text(json.dumps(info, indent=2) + "\n")
    print(to_markdown(rows, info))
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
