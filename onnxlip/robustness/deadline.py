"""A time limit for one radius search, checked between the margin tests of the search.

A batch run gives each input a time budget (``--timeout-per-input``). Stopping a search from
outside (killing a thread, cancelling a Dask future) does not stop the computation that runs
it, so the search itself checks the clock before each test and stops with the largest radius
it has proven so far: everything a test proved stays a proof, whatever comes after it.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from ..errors import InputError, OnnxlipError


class SearchTimeout(OnnxlipError):
    """The radius search ran past its time limit; ``proven`` is the largest radius a test had
    proven by then (None when none had), ``margin`` the margin at x0 (None when unknown)."""

    def __init__(self, seconds: float, proven: float | None, margin: float | None):
        self.seconds, self.proven, self.margin = seconds, proven, margin
        super().__init__(f"the radius search ran past its time limit of {seconds:g} s")


class Deadline:
    """The clock of one search: ``guard`` wraps a margin test so that it refuses to start past
    the limit and remembers each radius it proves. ``Deadline(None)`` never expires."""

    def __init__(self, seconds: float | None, start: float | None = None):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise InputError(f"a time limit must be a finite number of seconds > 0, got {seconds}")
        self.seconds = seconds
        self.ends = math.inf if seconds is None else (time.perf_counter() if start is None else start) + seconds
        self.proven: float | None = None
        self.margin: float | None = None

    def remaining(self) -> float:
        return self.ends - time.perf_counter()

    def check(self) -> None:
        """Raise ``SearchTimeout`` once the limit has passed."""
        if self.seconds is not None and self.remaining() <= 0:
            raise SearchTimeout(self.seconds, self.proven, self.margin)

    def proved(self, eps: float) -> None:
        self.proven = eps if self.proven is None else max(self.proven, eps)

    def guard(self, holds: Callable[[float], bool]) -> Callable[[float], bool]:
        """``holds`` with the clock checked before each test, and each ε it certifies noted."""
        def guarded(eps: float) -> bool:
            self.check()
            ok = holds(eps)
            if ok:
                self.proved(eps)
            return ok

        return guarded

    def guide(self, holds: Callable[[float], bool]) -> Callable[[float], bool]:
        """``holds`` with the clock checked before each test, for a test that proves nothing
        (one on estimated norms, which only guides a search)."""
        def guided(eps: float) -> bool:
            self.check()
            return holds(eps)

        return guided

    def budget(self, seconds: float) -> float:
        """A sub-budget (branch and bound's) cut to the time left, so one test cannot overrun."""
        return seconds if self.seconds is None else max(0.0, min(seconds, self.remaining()))
