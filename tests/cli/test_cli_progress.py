"""The progress bar: drawn on a terminal, never with --json/--quiet or into a pipe."""
from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys

import pytest
from rich.console import Console

from onnxlip.cli import certify_commands, common
from onnxlip.cli import progress

from cli_runner import ROOT, model, run

BAR = "━"  # rich's bar glyph (tables use ─)


def run_on_tty(*args: str) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it drew, escapes included."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "CI", "COLUMNS")}
    env.update(TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "onnxlip", *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_bar_on_a_terminal_and_not_with_json() -> None:
    path, x0 = model("mlp")
    args = ("sweep", path, "--input", x0, "--eps-max", "1", "--n", "5")
    code, text = run_on_tty(*args)
    assert code == 0 and "sweep: local bounds" in text and BAR in text and "5/5" in text
    assert "local bound over eps" in text  # the results follow the (transient) bar
    code, text = run_on_tty(*args, "--json")
    assert code == 0 and BAR not in text and "sweep:" not in text
    assert json.loads(text.replace("\r\n", "\n"))["points"]
    code, text = run_on_tty(*args, "--quiet")
    assert code == 0 and BAR not in text


def test_bar_with_a_forced_terminal_console(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    terminal = Console(file=buffer, force_terminal=True, width=100)
    for module in (common, certify_commands):  # the console the bar decides on, and the one it draws on
        monkeypatch.setattr(module, "out", terminal)
    path, x0 = model("mlp")
    code, _, _ = run("certify", path, "--inputs", x0)
    assert code == 0 and "certifying inputs" in buffer.getvalue() and BAR in buffer.getvalue()


def test_no_bar_into_a_pipe() -> None:
    path, x0 = model("mlp")
    code, stdout, stderr = run("sweep", path, "--input", x0, "--eps-max", "1", "--n", "5")
    assert code == 0 and BAR not in stdout + stderr and "\x1b[" not in stdout


def test_wanted_and_tracked_list() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert progress.wanted(terminal) and not progress.wanted(terminal, json_=True)
    assert not progress.wanted(terminal, quiet=True) and not progress.wanted(Console(file=io.StringIO()))
    ticks: list[int] = []
    items = progress.TrackedList([1, 2, 3], lambda: ticks.append(len(ticks)))
    seen = []
    for item in items:  # one tick per finished item, when the next one is asked for
        seen.append((item, len(ticks)))
    assert seen == [(1, 0), (2, 1), (3, 2)] and len(ticks) == 3 and items == [1, 2, 3] and len(items) == 3
