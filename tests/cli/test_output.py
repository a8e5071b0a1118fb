"""What people see: heartbeat lines for logs, the sweep's running-maximum lower bound, table titles, histograms."""
from __future__ import annotations

import io
import time
from types import SimpleNamespace

from rich.console import Console

from onnxlip.cli import progress
from onnxlip.cli import report


def test_heartbeat_line_says_phase_elapsed_and_time_left() -> None:
    assert progress.heartbeat_line("local bounds: ε=0.01: secant bound", 40.2) == \
        "onnxlip: local bounds: ε=0.01: secant bound — 40 s elapsed"
    assert progress.heartbeat_line("sweep", 30, 1, 4).endswith("30 s elapsed, 1/4 done, about 90 s left")


def test_heartbeat_writes_while_work_runs_and_follows_phases() -> None:
    stream = io.StringIO()
    with progress.Heartbeat(stream, "phase one", total=2, every=0.02) as beat:
        time.sleep(0.1)
        beat.description, beat.done = "phase two", 1
        time.sleep(0.1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("onnxlip: phase one — ") and lines[-1].startswith("onnxlip: phase two — ")
    assert "1/2 done" in lines[-1]


def test_heartbeat_only_off_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress.heartbeat_wanted(io.StringIO()) and not progress.heartbeat_wanted(io.StringIO(), quiet=True)
    assert not progress.heartbeat_wanted(Tty())


def test_bar_feeds_the_heartbeat(capsys) -> None:
    with progress.bar(Console(file=io.StringIO()), False, "work", total=3, beat=True, every=0.02) as bar:
        bar.describe("work: phase")
        bar.advance()
        time.sleep(0.1)
    assert "onnxlip: work: phase — " in capsys.readouterr().err


def test_sweep_lower_is_a_running_maximum() -> None:
    found = [SimpleNamespace(value=v, method="ascent", jacobian=None) for v in (3.0, 5.0, 4.0, 6.0)]
    results = [SimpleNamespace(eps=e, bound=10.0, is_estimate=False, seconds=0.0) for e in (0.1, 0.2, 0.3, 0.4)]
    points = report.sweep_dict(results, 20.0, "best", found, 0.0)["points"]
    assert [p["lower"] for p in points] == [3.0, 5.0, 5.0, 6.0]
    assert [p["lower_found"] for p in points] == [3.0, 5.0, 4.0, 6.0]


def test_table_titles_do_not_wrap() -> None:
    data = {"points": [{"eps": 0.1, "bound": 2.0}], "global_bound": 103957.0, "method": "best"}
    console = Console(file=io.StringIO(), width=120)
    console.print(report.sweep_table(data))
    assert "local bound over eps (method best), global bound 103957" in console.file.getvalue()


def test_histogram_legend_says_what_it_counts() -> None:
    from onnxlip.cli.plots import histogram_legend

    assert histogram_legend(8, 2, True) == "8 correctly classified inputs (2 misclassified, not shown)"
    assert histogram_legend(10, 0, False) == "10 inputs, radius of their predicted label (no labels given)"


def test_histogram_counts_on_integer_ticks(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from onnxlip.cli import plots

    ticks: list[float] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: ticks.extend(fig.axes[0].get_yticks()))
    plots.radius_histogram(tmp_path / "h.png", [0.1, 0.2, 0.2], [True, True, True], labelled=False)
    plt.close("all")
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_note_when_proofs_cost_much_over_the_estimates() -> None:
    """Layers too large to factorize get loose FFT bounds: the output says how much that cost and
    that --estimate gives the Lanczos figure; close proofs print nothing."""
    def printed(slacks: list[float]) -> str:
        stream = io.StringIO()
        layers = [SimpleNamespace(lipschitz=2.0 * s, estimate=2.0) for s in slacks] + [
            SimpleNamespace(lipschitz=1.0, estimate=None)]
        report.print_proof_cost(Console(file=stream, width=300), layers)
        return stream.getvalue()

    assert printed([1.0000001, 1.2]) == ""
    note = printed([1.3, 1.5])
    assert "1.95× the Lanczos estimate" in note and "--estimate" in note
