"""Progress reporting that stays readable in a log file.

On a terminal, a tqdm bar; without one (output redirected to a file, CI), one plain line
every ``interval`` seconds and one at the end, instead of thousands of carriage-return
updates. ``DSM_PROGRESS=bar|lines|off`` forces a style.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

__all__ = ["progress_style", "track", "LineProgress"]

T = TypeVar("T")

#: Seconds between two progress lines when the output is not a terminal.
DEFAULT_INTERVAL = 30.0


def progress_style(stream: IO[str] | None = None) -> str:
    """``"bar"`` on a terminal, ``"lines"`` otherwise, or ``DSM_PROGRESS`` when set.

    Raises:
        ValueError: ``DSM_PROGRESS`` is set to something else than bar, lines or off.
    """
    forced = os.environ.get("DSM_PROGRESS", "").strip().lower()
    if forced:
        if forced not in ("bar", "lines", "off"):
            raise ValueError(f"DSM_PROGRESS must be bar, lines or off, got {forced!r}")
        return forced
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class LineProgress:
    """Periodic one-line progress reports: ``desc: n/total (pct%) elapsed, rate``.

    A line every ``interval`` seconds while counting and one at :meth:`close`, so a short
    loop writes one line.

    Args:
        desc: what is being counted.
        total: expected count (None when unknown).
        unit: unit name in the line.
        interval: seconds between lines (the first and last are always written).
        stream: where lines go (``sys.stderr`` by default).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        interval: float = DEFAULT_INTERVAL,
        stream: IO[str] | None = None,
    ) -> None:
        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self._start = time.monotonic()
        self._last: float | None = None

    def _write(self) -> None:
        elapsed = time.monotonic() - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        self.stream.write(
            f"{self.desc}: {count} {self.unit}{pct}, {elapsed:.0f}s, {rate:.2f} {self.unit}/s\n"
        )
        self.stream.flush()
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more; write a line when ``interval`` has passed since the last one."""
        self.n += n
        since = self._last if self._last is not None else self._start
        if time.monotonic() - since >= self.interval:
            self._write()

    def close(self) -> None:
        """Write the final line."""
        self._write()


def track(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    interval: float = DEFAULT_INTERVAL,
) -> Iterator[T]:
    """Iterate with progress: a tqdm bar on a terminal, periodic lines otherwise.

    Args:
        iterable: what to iterate.
        desc: description shown with the count.
        total: expected length (None: ``len(iterable)`` when available).
        unit: unit name.
        enabled: False yields the items without any output.
        interval: seconds between lines when not on a terminal.

    Yields:
        The items of ``iterable``.
    """
    style = progress_style() if enabled else "off"
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if style == "off":
        yield from iterable
        return
    if style == "bar":
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)
        return
    line = LineProgress(desc, total, unit, interval)
    for item in iterable:
        yield item
        line.update()
    line.close()
