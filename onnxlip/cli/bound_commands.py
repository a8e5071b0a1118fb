"""Commands that bound the network: inspect, global, local, sweep, lower."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from typing_extensions import Annotated

from ..bounds import methods
from ..errors import InputError
from . import progress
from .app import Command, app, handles_errors
from .common import (_bar, _beat, _box, CertifiedOpt, check_eps, _choices, _common, DebugOpt, default_jacobian_points,
                     DeviceOpt, emit_json, ensure_matches, _eps_list, EpsOpt, InputOpt, JsonOpt, KeyOpt,
                     _label_margin, load_model, load_nominal, lower_bound, MeanOpt, _method, MethodOpt, ModelArg,
                     NormOpt, _notes, np, OneEps, out, _phases, QuietOpt, radius_of, _range_dict, _range_note,
                     RangeOpt, report, _sized, StdOpt, _valid_inputs, verify, _warnings, _write_csv)

if TYPE_CHECKING:
    pass


@app.command(cls=Command)
@handles_errors
def inspect(model: ModelArg, verify_: Annotated[bool, typer.Option("--verify", metavar="", help="Compare the IR with onnxruntime (exit 1 above tolerance).")] = False,
            input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Input for --verify (default: random); .npy, .npz or .vnnlib.")] = None,
            key: KeyOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Show the IR the model imports to (one line per node); optionally verify it against onnxruntime."""
    net = load_model(model)
    x = load_nominal(input, net, key).x0 if input else None
    result = verify(net, x) if verify_ else None
    if json_:
        data = report.network_dict(net)
        if result is not None:
            data["verify"] = result.as_dict()
        emit_json(data)
    else:
        if not quiet:
            out.print(report.network_table(net))
        _warnings(net, quiet)
        if result is not None:
            status = "OK" if result.ok else "MISMATCH"
            out.print(f"verify vs onnxruntime: max abs diff {result.max_abs_diff:.3g}, "
                      f"relative {result.relative_diff:.3g} over {result.samples} inputs: {status}")
    if result is not None and not result.ok:
        raise typer.Exit(1)


@app.command("global", cls=Command)
@handles_errors
def global_(model: ModelArg, norm: NormOpt = "l2", device: DeviceOpt = "auto", json_: JsonOpt = False,
            certified: CertifiedOpt = methods.DEFAULT_CERTIFIED, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Global Lipschitz bound: the product of the layers' norms (holds for all pairs of inputs)."""
    xp = _common(norm, device, quiet, gpu_work=not certified)
    net = load_model(model)
    ensure_matches(net)
    xp = _sized(xp, device, net)
    with progress.bar(out, _bar(json_, quiet), "global bound", beat=_beat(quiet)):
        result = methods.global_bound_on(net, certified, xp)
    if json_:
        emit_json({**report.global_dict(result), "certified": certified})
        return
    if quiet:
        out.print(f"{result.bound:.10g}")
        return
    _warnings(net, quiet)
    out.print(report.layer_table(result.layers, "global layer constants", local=False))
    report.print_proof_cost(out, result.layers)
    out.print(f"global Lipschitz bound = [bold]{result.bound:.6g}[/bold]")


@app.command(cls=Command)
@handles_errors
def local(model: ModelArg, input: InputOpt, eps: EpsOpt = None, key: KeyOpt = None, method: MethodOpt = None,
          radius: Annotated[bool, typer.Option("--radius", metavar="", help="Also compute the certified radius.")] = False,
          input_range: RangeOpt = None, mean: MeanOpt = None, std: StdOpt = None, norm: NormOpt = "l2",
          device: DeviceOpt = "auto", json_: JsonOpt = False, certified: CertifiedOpt = methods.DEFAULT_CERTIFIED, quiet: QuietOpt = False,
          debug: DebugOpt = False) -> None:
    """Local Lipschitz bound L(x0, eps) on the L2 ball of radius eps around x0, per layer."""
    method = _method(method)
    xp = _common(norm, device, quiet, methods.runs_on_device(method, certified))
    net = load_model(model)
    xp = _sized(xp, device, net)
    nominal = load_nominal(input, net, key)
    grid = _eps_list(eps, nominal)
    ensure_matches(net, [nominal.x0], max(grid))
    valid = _valid_inputs(input_range, mean, std)
    box = _box(valid, nominal.x0)
    _notes(nominal, quiet)
    label, margin = _label_margin(net, nominal.x0)
    with progress.bar(out, _bar(json_, quiet), "local bounds", total=len(grid), beat=_beat(quiet)) as bar:
        run = methods.run_local(net, nominal.x0, progress.TrackedList(grid, bar.advance), method, certified, box, xp,
                                _phases(bar, "local bounds"))
        results = run.results
        bar.describe("certified radius")
        rad = radius_of(net, nominal.x0, None, method, certified, box) if radius else None
    if json_:
        data = {**report.local_dict(results, method, margin, label, run.choices), "certified": certified,
                "input_range": _range_dict(valid)}
        if rad is not None:
            data["radius"] = report.radius_dict(rad)
        emit_json(data)
    elif quiet:
        for r in results:
            out.print(f"{r.eps:g} {r.bound:.10g}")
        if rad is not None:
            out.print(f"radius {rad.radius:.10g}")
    else:
        _warnings(net, quiet)
        _range_note(valid, quiet)
        report.print_bounds(out, results, margin=margin, label=label)
        _choices(run.choices, quiet)
        if rad is not None:
            report.print_radius(out, rad)


@app.command(cls=Command)
@handles_errors
def sweep(model: ModelArg, input: InputOpt,
          eps_min: Annotated[Optional[float], typer.Option("--eps-min", show_default=False, help="Smallest eps (default eps-max/1000).")] = None,
          eps_max: Annotated[Optional[float], typer.Option("--eps-max", show_default=False, help="Largest eps (default for .vnnlib: the box's L2 radius).")] = None,
          n: Annotated[int, typer.Option("--n", min=1, max=10000, help="Number of log-spaced eps values.")] = 20,
          plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the figure (PNG, PDF or SVG by extension).")] = None,
          csv_: Annotated[Optional[Path], typer.Option("--csv", help="Write eps, bound, lower bound as CSV.")] = None,
          lower: Annotated[bool, typer.Option("--lower", metavar="", help="Add the empirical lower bound (random + gradient ascent).")] = False,
          key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = methods.DEFAULT_CERTIFIED, norm: NormOpt = "l2",
          device: DeviceOpt = "auto", json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Local bound over a log-spaced eps grid, with the global bound (and --lower): the paper's main figure."""
    method = _method(method)
    xp = _common(norm, device, quiet, methods.runs_on_device(method, certified))
    net = load_model(model)
    xp = _sized(xp, device, net)
    nominal = load_nominal(input, net, key)
    _notes(nominal, quiet)
    hi = check_eps(eps_max if eps_max is not None else _eps_list(None, nominal)[0])
    lo = check_eps(eps_min if eps_min is not None else hi / 1000)
    if lo > hi:
        raise InputError(f"--eps-min {lo:g} is larger than --eps-max {hi:g}")
    grid = [float(e) for e in np.geomspace(lo, hi, n)] if n > 1 else [hi]
    ensure_matches(net, [nominal.x0], hi)
    start = time.perf_counter()
    with progress.bar(out, _bar(json_, quiet), "sweep: local bounds", total=len(grid) * (2 if lower else 1),
                      beat=_beat(quiet)) as bar:
        g = methods.global_bound_on(net, certified, xp).bound
        run = methods.run_local(net, nominal.x0, progress.TrackedList(grid, bar.advance), method, certified, xp=xp,
                                on_phase=_phases(bar, "sweep"))
        results = run.results
        lows = None
        if lower:
            bar.describe("sweep: lower bounds")
            lows = []
            for e in grid:
                lows.append(lower_bound(net, nominal.x0, e, n_random=64, steps=15, restarts=4, n_jacobian=8))
                bar.advance()
    data = report.sweep_dict(results, g, method, lows, time.perf_counter() - start, run.choices)
    if csv_ is not None:
        header = ["eps", "bound", "estimate", "global_bound"] + (["lower", "lower_method", "jacobian"] if lows else [])
        rows = [[p["eps"], p["bound"], p["estimate"], g] + ([p["lower"], p["lower_method"], p["jacobian"]] if lows else [])
                for p in data["points"]]
        _write_csv(csv_, header, rows)
        data["csv"] = os.fspath(csv_)
    if plot is not None:
        from .plots import sweep_plot

        sweep_plot(plot, grid, [r.bound for r in results], g, [p["lower"] for p in data["points"]] if lows else None,
                   title=f"{Path(net.source).name}, x0 = {nominal.name} ({method})", estimate=data["estimate"])
        data["plot"] = os.fspath(plot)
    if json_:
        emit_json(data)
    elif quiet:
        for p in data["points"]:
            out.print(" ".join([f"{p['eps']:g}", f"{p['bound']:.10g}"] + ([f"{p['lower']:.10g}"] if lows else [])))
    else:
        _warnings(net, quiet)
        out.print(report.sweep_table(data))
        _choices(run.choices, quiet)
        if lows:
            out.print("[dim]lower: the largest ratio found at this eps or a smaller one (a point of a smaller ball "
                      "lies in every larger ball)[/dim]")
        if data["estimate"]:
            out.print(f"[dim]{report.ESTIMATE_NOTE}[/dim]")
        for what in ("csv", "plot"):
            if what in data:
                out.print(f"wrote {data[what]}")




@app.command(cls=Command)
@handles_errors
def lower(model: ModelArg, input: InputOpt, eps: OneEps = None, key: KeyOpt = None,
          samples: Annotated[int, typer.Option("--samples", min=1, help="Random points in the ball.")] = 256,
          steps: Annotated[int, typer.Option("--steps", min=0, help="Gradient-ascent steps.")] = 40,
          restarts: Annotated[int, typer.Option("--restarts", min=1, help="Gradient-ascent restarts.")] = 8,
          jacobian_points: Annotated[Optional[int], typer.Option(
              "--jacobian-points", min=0, show_default=False,
              help="Points for the max ‖J(x)‖₂ (default 32; 4 above 1e8 multiply-adds; 0: skip it).")] = None,
          norm: NormOpt = "l2", device: DeviceOpt = "auto", json_: JsonOpt = False, quiet: QuietOpt = False,
          debug: DebugOpt = False) -> None:
    """Empirical lower bound of L(x0, eps): the best ratio |f(x)-f(x0)|/|x-x0| found in the ball."""
    _common(norm, device, quiet)
    net = load_model(model)
    nominal = load_nominal(input, net, key)
    e = _eps_list([eps] if eps is not None else None, nominal)[0]
    ensure_matches(net, [nominal.x0], e)
    _notes(nominal, quiet)
    start = time.perf_counter()
    with progress.bar(out, _bar(json_, quiet), "lower bound"):
        points = default_jacobian_points(net) if jacobian_points is None else jacobian_points
        lb = lower_bound(net, nominal.x0, e, n_random=samples, steps=steps, restarts=restarts,
                         n_jacobian=points or None)
    data = report.lower_dict(e, lb, time.perf_counter() - start)
    if json_:
        emit_json(data)
    elif quiet:
        out.print(f"{lb.value:.10g}")
    else:
        out.print(f"lower bound  L(x0, eps={e:g}) >= [bold]{lb.value:.6g}[/bold]  (method: {lb.method}, "
                  f"{data['seconds']:.2f} s)")
        if lb.jacobian is not None:
            out.print(f"  max ‖J(x)‖₂ over sampled x in the ball (the paper's gradient bound): {lb.jacobian:.6g}")
        out.print("  every certified bound L(x0, eps) from `onnxlip local` is at least the lower bound")


