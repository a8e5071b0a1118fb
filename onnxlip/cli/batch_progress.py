"""Progress of a batch run: inputs done / total, running certified accuracy, time left.

On a terminal the line is the description of the transient bar (``progress.bar``); into a pipe
or a CI log it is printed on stderr every ``every`` seconds (a short run prints none), so a long
run shows that it lives without flooding the log; with --json or --quiet nothing is shown.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

from .progress import Bar

LOG_EVERY = 5.0  # seconds between two progress lines in a log


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
    ``write`` every ``every`` seconds (a log) from a timer thread, so that an input that takes
    minutes still shows the run is alive; a no-op when neither is given. Use it as a context
    manager (the timer runs inside)."""

    def __init__(self, tally: Tally, bar: Bar | None = None, write: Callable[[str], None] | None = None,
                 every: float | None = None):
        self.tally, self.bar, self.write = tally, bar, write
        self.every = LOG_EVERY if every is None else every
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def __call__(self, record: dict[str, Any], computed: bool = True) -> None:
        self.tally.add(record, computed)
        if self.bar is not None:
            self.bar.advance()
            self.bar.describe(f"certifying inputs: {self.tally.line()}")

    def tick(self) -> None:
        """One log line (what the timer writes every ``every`` seconds), once an input has
        finished: before that it would say nothing (no accuracy, no ETA), and an error met while
        starting (an unreachable scheduler) stays the only line on stderr."""
        if self.write is not None and self.tally.done:
            self.write(f"certify: {self.tally.line()}")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def __enter__(self) -> "Reporter":
        if self.write is not None:
            self._timer = threading.Thread(target=self._run, name="onnxlip-progress", daemon=True)
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
