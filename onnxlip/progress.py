"""Progress bars for long work (sweeps, batch certification, large networks).

A bar is drawn only for people: when the console is a terminal and neither ``--json`` nor
``--quiet`` was given. It is transient (erased when the work ends), so the results that
follow read the same with or without it. Everything here is a no-op when disabled.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn)


def wanted(console: Console, json_: bool = False, quiet: bool = False) -> bool:
    """Whether a progress bar belongs on ``console``: a terminal, and no --json/--quiet."""
    return console.is_terminal and not console.is_dumb_terminal and not json_ and not quiet


class Bar:
    """One progress task; ``advance()`` after each finished item (no-op when disabled)."""

    def __init__(self, progress: Progress | None, description: str, total: int | None):
        self._progress = progress
        self._task = progress.add_task(description, total=total) if progress is not None else None

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def describe(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)


@contextmanager
def bar(console: Console, enabled: bool, description: str, total: int | None = None) -> Iterator[Bar]:
    """A transient bar on ``console`` (a spinner with elapsed time when ``total`` is None)."""
    if not enabled:
        yield Bar(None, description, total)
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns += [MofNCompleteColumn(), TaskProgressColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield Bar(progress, description, total)


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
