"""Progress of a batch run: inputs done / total, running certified accuracy, time left.

On a terminal the line is the description of the transient bar (``progress.bar``); into a pipe
or a CI log (stderr not a terminal) it is printed on stderr every ``every`` seconds, so a long
run shows that it lives without flooding the log; with --json or --quiet nothing is shown.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from .progress import Bar


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA --"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}h{minutes:02d}m" if hours else f"ETA {minutes}m{secs:02d}s" if minutes else f"ETA {secs}s"


class Tally:
    """Running counts; the ETA comes from the inputs computed in this run only (those read back
    from a results file took no time)."""

    def __init__(self, total: int, radii: Sequence[float], clock: Callable[[], float] = time.perf_counter):
        self.total, self.radii, self.clock = total, list(radii), clock
        self.start = clock()
        self.done = self.computed = self.failed = 0
        self.certified = [0] * len(self.radii)

    def add(self, record: dict[str, Any], computed: bool = True) -> None:
        self.done += 1
        self.computed += computed
        self.failed += record.get("status", "ok") != "ok"
        radius = record["radius"] if record["radius"] is not None else 0.0
        for i, r in enumerate(self.radii):
            self.certified[i] += bool(record["correct"]) and radius >= r

    def eta(self) -> float | None:
        if not self.computed:
            return None
        return (self.clock() - self.start) / self.computed * (self.total - self.done)

    def line(self) -> str:
        accuracy = " ".join(f"{r:g}:{c / max(self.done, 1):.0%}" for r, c in zip(self.radii, self.certified))
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total} inputs{failed}; certified accuracy at radius {accuracy}; {eta_text(self.eta())}"


class Reporter:
    """Feeds a ``Tally`` and shows it: through ``bar`` (a terminal), or as a line through
    ``write`` at most every ``every`` seconds (a log); a no-op when neither is given."""

    def __init__(self, tally: Tally, bar: Bar | None = None, write: Callable[[str], None] | None = None,
                 every: float = 5.0):
        self.tally, self.bar, self.write, self.every = tally, bar, write, every
        self._last = tally.clock()

    def __call__(self, record: dict[str, Any], computed: bool = True) -> None:
        self.tally.add(record, computed)
        if self.bar is not None:
            self.bar.advance()
            self.bar.describe(f"certifying inputs: {self.tally.line()}")
        now = self.tally.clock()
        if self.write is not None and (now - self._last >= self.every or self.tally.done == self.tally.total):
            if now - self.tally.start >= self.every:  # a short run prints nothing
                self.write(f"certify: {self.tally.line()}")
            self._last = now
