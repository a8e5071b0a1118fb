"""Progress bars for long work (sweeps, batch certification, large networks), and heartbeats.

A bar is drawn only for people: when the console is a terminal and neither ``--json`` nor
``--quiet`` was given. It is transient (erased when the work ends), so the results that
follow read the same with or without it. Everything here is a no-op when disabled.

A heartbeat is for logs (CI, ``nohup``, a pipe): when stderr is not a terminal, one line there
every ``HEARTBEAT_SECONDS`` while the work runs, saying which phase runs, how long it has run
and, once items are done, about how long is left. Work that ends sooner prints nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

HEARTBEAT_SECONDS = 10.0


def wanted(console: Console, json_: bool = False, quiet: bool = False) -> bool:
    """Whether a progress bar belongs on ``console``: a terminal, and no --json/--quiet."""
    return console.is_terminal and not console.is_dumb_terminal and not json_ and not quiet


def heartbeat_wanted(stream: IO[str], quiet: bool = False) -> bool:
    """Whether heartbeat lines belong on ``stream``: not a terminal (a log), and no --quiet."""
    isatty = getattr(stream, "isatty", None)
    return not quiet and not (callable(isatty) and isatty())


def heartbeat_line(description: str, elapsed: float, done: int = 0, total: int | None = None) -> str:
    """'onnxlip: local bounds: ε=0.01: secant bound — 40 s elapsed, 1/3 done, about 80 s left'."""
    line = f"onnxlip: {description} — {elapsed:.0f} s elapsed"
    if total:
        line += f", {done}/{total} done"
        if 0 < done < total:
            line += f", about {elapsed / done * (total - done):.0f} s left"
    return line


class Heartbeat:
    """A thread that writes ``heartbeat_line`` to ``stream`` every ``every`` seconds until stopped."""

    def __init__(self, stream: IO[str], description: str, total: int | None, every: float = HEARTBEAT_SECONDS):
        self.description, self.total, self.done, self.every = description, total, 0, every
        self._stream, self._start, self._stop = stream, time.monotonic(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="onnxlip-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            line = heartbeat_line(self.description, time.monotonic() - self._start, self.done, self.total)
            self._stream.write(line + "\n")
            self._stream.flush()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class Bar:
    """One progress task; ``advance()`` after each finished item, ``describe()`` at each phase
    (no-op when disabled); both also feed the heartbeat when there is one."""

    def __init__(self, progress: Progress | None, description: str, total: int | None,
                 beat: Heartbeat | None = None):
        self._progress, self._beat = progress, beat
        self._task = progress.add_task(description, total=total) if progress is not None else None

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)
        if self._beat is not None:
            self._beat.done += steps

    def describe(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)
        if self._beat is not None:
            self._beat.description = description


@contextmanager
def _heartbeat(enabled: bool, description: str, total: int | None, every: float) -> Iterator[Heartbeat | None]:
    if not enabled:
        yield None
        return
    with Heartbeat(sys.stderr, description, total, every) as beat:
        yield beat


@contextmanager
def bar(console: Console, enabled: bool, description: str, total: int | None = None, beat: bool = False,
        every: float | None = None) -> Iterator[Bar]:
    """A transient bar on ``console`` (a spinner with elapsed time when ``total`` is None; the time
    left once items are done); with ``beat``, heartbeat lines on stderr every ``every`` seconds
    (default ``HEARTBEAT_SECONDS``)."""
    with _heartbeat(beat, description, total, HEARTBEAT_SECONDS if every is None else every) as heartbeat:
        if not enabled:
            yield Bar(None, description, total, heartbeat)
            return
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total is not None:
            columns += [MofNCompleteColumn(), TaskProgressColumn()]
        columns.append(TimeElapsedColumn())
        if total is not None:
            columns.append(TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            yield Bar(progress, description, total, heartbeat)


class TrackedList(list):
    """A list that advances a bar as a consumer iterates over it.

    The engine's sweep takes a list of ε and computes one bound per item in order (with
    warm starts between them); iterating lazily over this list ticks the bar once per
    finished item without changing what the engine computes.
    """

    def __init__(self, items: Sequence[Any], on_done: Callable[[], None]):
        super().__init__(items)
        self._on_done = on_done

    def __iter__(self) -> Iterator[Any]:
        for i, item in enumerate(super().__iter__()):
            if i:
                self._on_done()
            yield item
        if len(self):
            self._on_done()
