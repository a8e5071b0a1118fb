"""Command-line interface: a thin Typer layer over the public API.

Exit codes: 0 success, 1 a check failed (``check`` conditions, ``inspect --verify``,
an attack point onnxruntime disagrees with), 2 bad input or error — always one line on
stderr (the traceback only with ``--debug``).
"""
from __future__ import annotations

import csv
import functools
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup
from typing_extensions import Annotated

from .. import __version__
from ..bounds import methods
from . import progress
from .config import CONFIG_NAME, CheckConfig, load_config
from ..errors import InputError, OnnxlipError
from ..lazy import lazy_function, lazy_module

if TYPE_CHECKING:
    import numpy as np

    from ..batch.dataset import Options
    from ..bounds.domain import InputBox, InputRange
    from ..graph.network import Network
    from ..inputs.nominal import Nominal
else:  # loaded when a command first needs them: --help and --version start without NumPy or ONNX
    np = lazy_module("numpy")
    InputRange = lazy_function("onnxlip.bounds.domain", "InputRange")

report = lazy_module("onnxlip.cli.report")
batch_progress = lazy_module("onnxlip.cli.batch_progress")
DatasetOptions, run_dataset = (lazy_function("onnxlip.batch.dataset", name) for name in ("Options", "run_dataset"))
default_jacobian_points, lower_bound = (lazy_function("onnxlip.robustness.lower_bounds", name)
                                       for name in ("default_jacobian_points", "lower_bound"))
min_adversarial_distance = lazy_function("onnxlip.robustness.attacks", "min_adversarial_distance")
select = lazy_function("onnxlip.linalg.backend", "select")
global_bound = lazy_function("onnxlip.bounds.perlayer.engine", "global_bound")
check_plan, evaluate, junit_xml, plan, radius_of, write_junit = (
    lazy_function("onnxlip.cli.gates", name) for name in ("check_plan", "evaluate", "junit_xml", "plan", "radius_of",
                                                      "write_junit"))
load_model = lazy_function("onnxlip.api", "import_model")
check_eps, check_input, read_array = (lazy_function("onnxlip.inputs.arrays", name)
                                      for name in ("check_eps", "check_input", "read_array"))
load_nominal = lazy_function("onnxlip.inputs.nominal", "load_nominal")
margin_of = lazy_function("onnxlip.robustness.radius", "margin_of")
ensure_matches, verify = (lazy_function("onnxlip.importer.verify", name) for name in ("ensure_matches", "verify"))

try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException  # type: ignore[no-redef]


def _flag_help(option: Any) -> Any:
    """--help is a flag: no value placeholder in the help text."""
    if option is not None:
        option.metavar = ""
    return option


class Command(TyperCommand):
    """A command whose --help shows as a flag."""

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_help(super().get_help_option(ctx))


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, missing argument) as one ``error:`` line, exit 2."""

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_help(super().get_help_option(ctx))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was shown for a bare command
                message = exc.format_message()
                if message.strip():
                    out.print(message, markup=False, highlight=False)
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "onnxlip"
            err.print(f"error: {where}: {exc.format_message()} (see {where} --help)", soft_wrap=True, markup=False)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.")


def _width() -> int | None:
    """Tables keep their columns in logs and pipes (120 wide) unless COLUMNS says otherwise."""
    return None if os.environ.get("COLUMNS") or sys.stdout.isatty() else 120


out = Console(highlight=False, width=_width())
err = Console(stderr=True, highlight=False)


ModelArg = Annotated[Path, typer.Argument(help="ONNX model file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON (no tables, no progress bar).")]
InputOpt = Annotated[Path, typer.Option("--input", "-i", show_default=False,
                                        help="Nominal input x0: .npy, .npz (with --key) or a .vnnlib property "
                                             "(x0 = box centre, default eps = the box's L2 radius).")]
OptInput = Annotated[Optional[Path], typer.Option("--input", "-i", show_default=False,
                                                  help="Nominal input x0: .npy, .npz (with --key) or .vnnlib.")]
KeyOpt = Annotated[Optional[str], typer.Option("--key", help="Array name inside an .npz input.")]
EpsOpt = Annotated[Optional[List[float]], typer.Option("--eps", "-e", show_default=False,
                                                       help="L2 ball radius (repeatable; default for .vnnlib: "
                                                            "the box's L2 radius).")]
OneEps = Annotated[Optional[float], typer.Option("--eps", "-e", show_default=False,
                                                 help="L2 ball radius (default for .vnnlib: the box's L2 radius).")]
NormOpt = Annotated[str, typer.Option("--norm", help="Norm of bounds and radii (only l2 for now).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Where to compute: cpu|gpu|auto; auto: the GPU "
                                                         "for large networks when CuPy sees one (per-layer method "
                                                         "and global bound only).")]
MethodOpt = Annotated[Optional[str], typer.Option("--method", show_default=False,
                                                  help=f"Local-bound method: {'|'.join(methods.METHODS)} "
                                                       f"(default {methods.DEFAULT_METHOD}).")]
CertifiedOpt = Annotated[bool, typer.Option("--certified", metavar="", help="Provable norms (exact SVD, Cholesky-proven Lanczos, FFT or l1-linf bounds, rounding "
                                            "accounted for) instead of converged estimates.")]
RangeOpt = Annotated[Optional[Tuple[float, float]], typer.Option(
    "--input-range", show_default=False, metavar="LO HI",
    help="Valid input values, e.g. 0 1 for pixels: tight bounds, radii and attacks then cover only the "
         "ball's inputs in that range (the nominal input must be in it).")]
MeanOpt = Annotated[Optional[str], typer.Option(
    "--mean", show_default=False, help="With --input-range: the model takes (x - mean)/std; one value or one per "
                                       "channel, comma-separated (e.g. 0.4914,0.4822,0.4465).")]
StdOpt = Annotated[Optional[str], typer.Option("--std", show_default=False, help="With --input-range: see --mean.")]
BranchOpt = Annotated[float, typer.Option(
    "--branch-seconds", min=0.0, help="Branch and bound on ReLU splits where the tight test fails, up to this many "
                                      "seconds per radius tested (0: off). mnist_lenet: 0.227 → 0.25 at 10 s.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="Only the final numbers, no notes or progress bar.")]
DebugOpt = Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks of errors.")]


def _traceback_and_exit() -> None:
    """--debug: the whole traceback on stderr, and the same exit code as without it."""
    traceback.print_exc(file=sys.stderr)
    raise typer.Exit(2) from None


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any error into one line on stderr and exit code 2 (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except OnnxlipError as exc:
            if kwargs.get("debug"):
                _traceback_and_exit()
            err.print(f"error: {exc}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None
        except Exception as exc:  # a bug or an input we did not foresee: still one line
            if kwargs.get("debug"):
                _traceback_and_exit()
            message = " ".join(str(exc).split())
            err.print(f"error: internal {type(exc).__name__}: {message} (rerun with --debug)", soft_wrap=True,
                      markup=False)
            raise typer.Exit(2) from None

    return wrapper


def _clean(value: Any) -> Any:
    """JSON-ready: NumPy scalars/arrays to Python, inf/NaN to null (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return os.fspath(value)
    return value


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


def _version(value: bool) -> None:
    if value:
        out.print(f"onnxlip {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.

    Every command takes --help; computing commands share --input/--key, --eps, --norm,
    --device, --method, --json, --quiet and --debug. Exit codes: 0 ok, 1 a check failed,
    2 bad input.
    """


# ---------------------------------------------------------------- shared option handling

def _norm(norm: str) -> None:
    if norm.lower() not in ("l2", "2"):
        raise InputError(f"--norm {norm}: only l2 is supported (L2 bounds and radii)")


def _device(device: str, quiet: bool = False, gpu_work: bool = False) -> ModuleType:
    """The array module --device selects (``backend.select``): CuPy only for ``gpu_work``, the
    computations that run on a GPU (``methods.runs_on_device``); with an explicit ``gpu`` the
    rest note that they run on the CPU."""
    xp = select(device)
    if xp is not np and not gpu_work:
        if not quiet and device == "gpu":
            err.print(f"note: --device {device}: this computation runs on the CPU (the GPU runs the global "
                      "bound and the per-layer method, --method paper)", markup=False)
        return np
    return xp


def _method(method: str | None) -> str:
    return methods.check_method(method, "--method")


def _common(norm: str, device: str, quiet: bool = False, gpu_work: bool = False) -> ModuleType:
    _norm(norm)
    return _device(device, quiet, gpu_work)


def _sized(xp: ModuleType, device: str, net: Network) -> ModuleType:
    """--device auto keeps small networks on the CPU, where they run faster (``methods.worth_gpu``)."""
    return np if device == "auto" and not methods.worth_gpu(net) else xp


def _notes(nominal: Nominal, quiet: bool) -> None:
    if not quiet:
        for note in nominal.notes:
            err.print(f"note: {note}", soft_wrap=True, markup=False)


def _warnings(net: Network, quiet: bool) -> None:
    if not quiet:
        for warning in net.warnings:
            err.print(f"warning: {warning}", soft_wrap=True, markup=False)


def _floats(option: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} needs comma-separated numbers, got '{text}'") from None


def _valid_inputs(input_range: tuple[float, float] | None, mean: str | None, std: str | None) -> InputRange | None:
    """The range of valid inputs the options give (None: the whole ball counts)."""
    if input_range is None:
        if mean is not None or std is not None:
            raise InputError("--mean and --std describe --input-range: give the raw range too, e.g. --input-range 0 1")
        return None
    return InputRange(*input_range, _floats("--mean", mean or "0"), _floats("--std", std or "1"))


def _box(valid: InputRange | None, x0: np.ndarray) -> InputBox | None:
    return None if valid is None else valid.box(x0)


def _range_note(valid: InputRange | None, quiet: bool) -> None:
    if valid is not None and not quiet:
        scaled = "" if valid.mean == (0.0,) and valid.std == (1.0,) else " before normalisation"
        out.print(f"[dim]inputs restricted to [{valid.lo:g}, {valid.hi:g}]{scaled}: tight bounds and radii "
                  "hold for the ball's inputs in that range only[/dim]")


def _range_dict(valid: InputRange | None) -> dict[str, Any] | None:
    return None if valid is None else valid.as_dict()


def _eps_list(eps: Sequence[float] | None, nominal: Nominal) -> list[float]:
    if eps:
        return [check_eps(e) for e in eps]
    if nominal.eps is not None:
        return [check_eps(nominal.eps)]
    raise InputError(f"--eps is required for {nominal.source} (only .vnnlib inputs imply one)")


def _label_margin(net: Network, x0: np.ndarray) -> tuple[int | None, float | None]:
    """Predicted label and margin at x0 (None for a single output)."""
    logits = np.asarray(net.forward(x0[None])).reshape(-1)
    if logits.size < 2:
        return None, None
    label = int(np.argmax(logits))
    return label, margin_of(logits, label)


def _bar(json_: bool, quiet: bool) -> bool:
    return progress.wanted(out, json_, quiet)


def _beat(quiet: bool) -> bool:
    """Heartbeat lines on stderr for logs (stderr not a terminal), also with --json; not with --quiet."""
    return progress.heartbeat_wanted(sys.stderr, quiet)


def _phases(bar: progress.Bar, what: str) -> Callable[[str], None]:
    """``methods.run_local``'s phases shown on the bar (and heartbeat) as 'what: phase'."""
    return lambda phase: bar.describe(f"{what}: {phase}")


def _choices(choices: Sequence[methods.Choice], quiet: bool) -> None:
    if not quiet:
        for line in report.choice_lines(choices):
            out.print(f"[dim]{line}[/dim]", soft_wrap=True)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the CSV file ({exc.strerror})") from None


# ---------------------------------------------------------------- commands

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
            certified: CertifiedOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
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
    out.print(f"global Lipschitz bound = [bold]{result.bound:.6g}[/bold]")


@app.command(cls=Command)
@handles_errors
def local(model: ModelArg, input: InputOpt, eps: EpsOpt = None, key: KeyOpt = None, method: MethodOpt = None,
          radius: Annotated[bool, typer.Option("--radius", metavar="", help="Also compute the certified radius.")] = False,
          input_range: RangeOpt = None, mean: MeanOpt = None, std: StdOpt = None, norm: NormOpt = "l2",
          device: DeviceOpt = "auto", json_: JsonOpt = False, certified: CertifiedOpt = False, quiet: QuietOpt = False,
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
          key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = False, norm: NormOpt = "l2",
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


DEFAULT_RADII = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _radii(text: str | None) -> list[float]:
    if text is None:
        return list(DEFAULT_RADII)
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--radii must be comma-separated numbers, got '{text}'") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise InputError(f"--radii must be non-negative finite numbers, got '{text}'")
    return values


def _batch_arrays(net: Network, path: Path, key: str | None, labels: Path | None,
                  labels_key: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs [N, *input_shape] and integer labels [N] (or None) for batch certification."""
    where = os.fspath(path)
    y = read_array(path, labels_key) if labels_key is not None else None  # names a missing key first
    if where.endswith(".npz") and key is None and labels_key is not None:
        try:
            with np.load(where, allow_pickle=False) as z:
                others = [k for k in z.files if k != labels_key]
        except Exception:
            others = []
        key = others[0] if len(others) == 1 else None
    xs = read_array(path, key)
    shape = tuple(net.input_shape)
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    if xs.shape == shape:
        xs = xs[None]
    elif xs.ndim >= 1 and xs.shape[1:] != shape and squeeze(xs.shape[1:]) == squeeze(shape):
        xs = xs.reshape(len(xs), *shape)
    if xs.ndim < 1 or xs.shape[1:] != shape or len(xs) == 0:
        raise InputError(f"{where}: shape {list(xs.shape)} is not [N, {', '.join(map(str, shape))}] for the model "
                         f"input '{net.input_name}'")
    for i, x in enumerate(xs):
        check_input(x, net, f"{where}[{i}]")
    if labels_key is not None or labels is not None:
        lwhere = f"{where} (key {labels_key})" if labels_key is not None else os.fspath(labels)
        y = np.asarray(y if y is not None else read_array(labels))
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(xs):
            raise InputError(f"{lwhere}: labels of shape {list(y.shape)} do not match {len(xs)} inputs (want [{len(xs)}])")
        if y.dtype.kind not in "iuf" or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise InputError(f"{lwhere}: labels must be integer class indices")
        y = y.astype(np.int64)
        classes = int(np.prod(net.output_shape))
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if bad.size:
            raise InputError(f"{lwhere}: label {y[bad[0]]} at index {bad[0]} is outside the model's {classes} outputs")
    return xs.astype(np.float64), y


@app.command(cls=Command)
@handles_errors
def certify(model: ModelArg, input: OptInput = None,
            inputs: Annotated[Optional[Path], typer.Option("--inputs", show_default=False, help="Many inputs [N, ...] (.npy, or .npz with --key) for certified accuracy.")] = None,
            label: Annotated[Optional[int], typer.Option("--label", help="Class to certify with --input (default: argmax at x0).")] = None,
            labels: Annotated[Optional[Path], typer.Option("--labels", help="True labels [N] for --inputs (.npy/.npz).")] = None,
            labels_key: Annotated[Optional[str], typer.Option("--labels-key", help="Array of true labels inside the --inputs .npz.")] = None,
            radii: Annotated[Optional[str], typer.Option("--radii", show_default=False, help="Radii of the certified-accuracy table, e.g. 0.01,0.05,0.1 (default 0,0.01,0.02,0.05,0.1,0.2,0.5).")] = None,
            csv_: Annotated[Optional[Path], typer.Option("--csv", help="Write per-input radii as CSV (with --inputs).")] = None,
            hist: Annotated[Optional[Path], typer.Option("--hist", help="Write a histogram of the radii (with --inputs).")] = None,
            workers: Annotated[Optional[int], typer.Option("--workers", min=1, show_default=False, help="With --inputs: local Dask worker processes (default: one per core; 1: in this process, no Dask).")] = None,
            scheduler: Annotated[Optional[str], typer.Option("--scheduler", show_default=False, help="With --inputs: address of a running Dask scheduler to certify on, e.g. tcp://10.0.0.5:8786.")] = None,
            results: Annotated[Optional[Path], typer.Option("--results", show_default=False, help="With --inputs: JSON-lines file, one line per finished input; rerun with it to resume.")] = None,
            timeout_per_input: Annotated[Optional[float], typer.Option("--timeout-per-input", show_default=False, help="With --inputs: seconds per input; past it the input is recorded as a timeout with the radius proven so far.")] = None,
            key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = False, input_range: RangeOpt = None,
            mean: MeanOpt = None, std: StdOpt = None, branch_seconds: BranchOpt = 0.0, norm: NormOpt = "l2",
            device: DeviceOpt = "auto",
            json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Largest certified L2 radius around x0 (--input), or certified accuracy over many inputs (--inputs)."""
    _common(norm, device, quiet)
    method = None if method is None else _method(method)  # None: the radius search's default
    valid = _valid_inputs(input_range, mean, std)
    if (input is None) == (inputs is None):
        raise InputError("certify needs exactly one of --input X (one input) or --inputs DATA (many inputs)")
    batch_only = {"--labels": labels, "--labels-key": labels_key, "--radii": radii, "--csv": csv_, "--hist": hist,
                  "--workers": workers, "--scheduler": scheduler, "--results": results,
                  "--timeout-per-input": timeout_per_input}
    if input is not None:
        given = [name for name, value in batch_only.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} work with --inputs (many inputs); --input certifies one")
        _certify_one(model, input, key, label, method, certified, valid, branch_seconds, json_, quiet)
        return
    if label is not None:
        raise InputError("--label works with --input; give --labels or --labels-key with --inputs")
    if labels is not None and labels_key is not None:
        raise InputError("give --labels FILE or --labels-key NAME, not both")
    if timeout_per_input is not None and not (math.isfinite(timeout_per_input) and timeout_per_input > 0):
        raise InputError(f"--timeout-per-input must be a number of seconds > 0, got {timeout_per_input:g}")
    _certify_many(model, inputs, key, labels, labels_key, _radii(radii), csv_, hist,
                  DatasetOptions(method, certified, valid, branch_seconds, timeout_per_input),
                  {"workers": workers, "scheduler": scheduler, "results": results}, json_, quiet)


def _certify_one(model: Path, input: Path, key: str | None, label: int | None, method: str | None, certified: bool,
                 valid: InputRange | None, branch_seconds: float, json_: bool, quiet: bool) -> None:
    net = load_model(model)
    nominal = load_nominal(input, net, key)
    ensure_matches(net, [nominal.x0], nominal.eps)
    valid_box = _box(valid, nominal.x0)
    _notes(nominal, quiet)
    with progress.bar(out, _bar(json_, quiet), "certified radius", beat=_beat(quiet)):
        result = radius_of(net, nominal.x0, label, method, certified, valid_box, branch_seconds)
    box = nominal.eps if nominal.kind == "vnnlib" else None
    if json_:
        data = {**report.radius_dict(result), "input_range": _range_dict(valid)}
        if box is not None:
            data.update(box_radius=box, box_certified=result.radius >= box)
        emit_json(data)
    elif quiet:
        out.print(f"{result.radius:.10g}")
    else:
        _warnings(net, quiet)
        _range_note(valid, quiet)
        report.print_radius(out, result)
        if box is not None:
            verdict = "[green]certified[/green]" if result.radius >= box else "not certified"
            out.print(f"VNN-LIB box ({nominal.name}): L2 radius {box:.6g} → label {result.label} {verdict} on the box")


def _certify_many(model: Path, inputs: Path, key: str | None, labels: Path | None, labels_key: str | None,
                  radii: list[float], csv_path: Path | None, hist: Path | None, options: Options,
                  where: dict[str, Any], json_: bool, quiet: bool) -> None:
    """Certified accuracy over many inputs (``dataset.run_dataset``: workers, results file)."""
    net = load_model(model)
    net.classes()
    xs, ys = _batch_arrays(net, inputs, key, labels, labels_key)
    ensure_matches(net, xs[:2])
    tally = batch_progress.Tally(len(xs), radii)
    with progress.bar(out, _bar(json_, quiet), "certifying inputs", total=len(xs)) as bar:
        drawn = _bar(json_, quiet)
        lines = None if drawn or json_ or quiet else (lambda text: err.print(text, soft_wrap=True, markup=False))
        with batch_progress.Reporter(tally, bar if drawn else None, lines) as reporter:
            run = run_dataset(net, model.read_bytes(), xs, ys, options, on_record=reporter, **where)
    for note in [] if quiet or json_ else run.notes:
        err.print(f"note: {note}", soft_wrap=True, markup=False)
    rows = run.rows()
    data = {"model": net.source, "inputs_file": os.fspath(inputs), "radii": radii, "certified": options.certified,
            "input_range": _range_dict(options.input_range)}
    data.update(report.batch_dict(rows, radii, ys is not None, run.seconds))
    if where["results"] is not None:
        data.update(results=os.fspath(where["results"]), computed=run.computed)
    if csv_path is not None:
        header = ["index", "label", "predicted", "correct", "radius", "radius_paper", "radius_folded",
                  "radius_tight", "radius_global", "margin", "method", "seconds"]
        _write_csv(csv_path, header, [[row[h] if row[h] is not None else "" for h in header] for row in rows])
        data["csv"] = os.fspath(csv_path)
    if hist is not None:
        from .plots import radius_histogram

        radius_histogram(hist, [r["radius"] for r in rows], [r["correct"] for r in rows], radii,
                         title=f"certified radii, {Path(net.source).name} ({len(rows)} inputs)", labelled=ys is not None)
        data["hist"] = os.fspath(hist)
    if json_:
        emit_json(data)
    elif quiet:
        for row in data["table"]:
            out.print(f"{row['radius']:g} {row['certified_accuracy']:.6g}")
    else:
        _warnings(net, quiet)
        out.print(report.inputs_table(rows))
        acc = "clean accuracy" if data["labelled"] else "inputs (labels = own predictions)"
        out.print(f"{acc}: {data['accuracy']:.1%} of {data['n']}" if data["labelled"] else f"{data['n']} {acc}")
        out.print(report.accuracy_table(data))
        for what in ("csv", "hist", "results"):
            if what in data:
                out.print(f"wrote {data[what]}")


@app.command(cls=Command)
@handles_errors
def check(model: Annotated[Optional[Path], typer.Argument(show_default=False, help=f"ONNX model file (default: from --config or ./{CONFIG_NAME}).")] = None,
          input: Annotated[Optional[List[Path]], typer.Option("--input", "-i", show_default=False, help="Nominal input (repeatable): .npy, .npz or .vnnlib.")] = None,
          eps: OneEps = None,
          max_bound: Annotated[Optional[float], typer.Option("--max-bound", show_default=False, help="Fail when L(x0, eps) > this.")] = None,
          min_radius: Annotated[Optional[float], typer.Option("--min-radius", show_default=False, help="Fail when the certified radius < this.")] = None,
          max_global_bound: Annotated[Optional[float], typer.Option("--max-global-bound", show_default=False, help="Fail when the global bound > this.")] = None,
          junit: Annotated[Optional[Path], typer.Option("--junit", show_default=False, help="Write a JUnit XML report (one testcase per condition).")] = None,
          config: Annotated[Optional[Path], typer.Option("--config", show_default=False, help=f"Read model, inputs and thresholds from this TOML file (default ./{CONFIG_NAME} when MODEL is not given).")] = None,
          key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = False, input_range: RangeOpt = None,
          mean: MeanOpt = None, std: StdOpt = None, branch_seconds: Annotated[Optional[float], typer.Option(
              "--branch-seconds", min=0.0, show_default=False, help="As for certify (default: from the config, else 0)."
          )] = None, norm: NormOpt = "l2", device: DeviceOpt = "auto", json_: JsonOpt = False, quiet: QuietOpt = False,
          debug: DebugOpt = False) -> None:
    """CI gate: exit 0 when every condition holds, 1 when one fails, 2 on bad input."""
    start = time.perf_counter()
    if config is None and model is None:
        if not Path(CONFIG_NAME).is_file():
            raise InputError(f"check: no MODEL given and no ./{CONFIG_NAME} found (or pass --config FILE)")
        config = Path(CONFIG_NAME)
    cfg = load_config(config) if config is not None else CheckConfig()
    junit = junit or cfg.junit
    model_path = model or cfg.model
    try:
        if model_path is None:
            raise InputError(f"check: no model: give MODEL or model = \"...\" in {cfg.source}")
        for name, value in (("--eps", eps), ("--max-bound", max_bound), ("--min-radius", min_radius),
                            ("--max-global-bound", max_global_bound)):
            if value is not None and not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")
        if eps is not None:
            check_eps(eps)
        thresholds = cfg.thresholds.merged(eps=eps, max_bound=max_bound, min_radius=min_radius,
                                           max_global_bound=max_global_bound)
        valid = _valid_inputs(input_range, mean, std) or cfg.input_range  # the command line's range first
        branch = cfg.branch_seconds if branch_seconds is None else branch_seconds
        _common(norm, device, quiet)
        chosen = _method(method or cfg.method)
        net = load_model(model_path)
        nominals = [load_nominal(p, net, key or cfg.key) for p in (input or cfg.inputs)]
        ensure_matches(net, [n.x0 for n in nominals], thresholds.eps)
        for nominal in nominals:
            _notes(nominal, quiet)
        check_plan(thresholds, nominals)
        with progress.bar(out, _bar(json_, quiet), "checking", total=plan(thresholds, nominals)) as bar:
            outcomes = evaluate(net, nominals, thresholds, chosen, bar.advance, certified, valid, branch)
    except Exception as exc:  # any error, ours or a bug: the report still records it as one errored case
        if junit is not None:
            try:
                write_junit(junit, junit_xml([], os.fspath(model_path or ""), time.perf_counter() - start, str(exc)))
            except OnnxlipError:
                pass
        raise
    seconds = time.perf_counter() - start
    if junit is not None:
        write_junit(junit, junit_xml(outcomes, os.fspath(model_path), seconds, properties={"method": chosen}))
    passed = all(o.passed for o in outcomes)
    if json_:
        data = report.check_dict(outcomes, os.fspath(model_path), seconds)
        data.update(method=chosen, certified=certified, input_range=_range_dict(valid), branch_seconds=branch,
                    junit=os.fspath(junit) if junit else None,
                    config=os.fspath(cfg.source) if cfg.source else None)
        emit_json(data)
    elif quiet:
        for o in outcomes:
            if not o.passed:
                err.print(f"FAIL {o.title}: {o.message}", soft_wrap=True, markup=False)
    else:
        _warnings(net, quiet)
        out.print(report.check_table(outcomes))
        failed = sum(not o.passed for o in outcomes)
        out.print(f"{len(outcomes) - failed} passed, {failed} failed" + (f"; wrote {junit}" if junit else ""))
    if not passed:
        raise typer.Exit(1)


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


@app.command(cls=Command)
@handles_errors
def attack(model: ModelArg, input: InputOpt, key: KeyOpt = None,
           label: Annotated[Optional[int], typer.Option("--label", help="Class to attack (default: argmax at x0).")] = None,
           save: Annotated[Optional[Path], typer.Option("--save", help="Save the adversarial point (.npy, float32, shape [1, ...]).")] = None,
           input_range: RangeOpt = None, mean: MeanOpt = None, std: StdOpt = None, norm: NormOpt = "l2",
           device: DeviceOpt = "auto", json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Smallest adversarial L2 perturbation found (an upper bound on any certified radius), checked with onnxruntime."""
    _common(norm, device, quiet)
    net = load_model(model)
    nominal = load_nominal(input, net, key)
    ensure_matches(net, [nominal.x0], nominal.eps)
    _notes(nominal, quiet)
    if label is None:  # the attack finds x0's own label; refuse early what it would refuse
        net.classes()
    else:
        net.label_at(nominal.x0, label)
    start = time.perf_counter()
    with progress.bar(out, _bar(json_, quiet), "attacking"):
        box = _box(_valid_inputs(input_range, mean, std), nominal.x0)
        found = min_adversarial_distance(net, nominal.x0, label, box=box)
    ort_label = None
    if found.found:
        from ..importer.runtime import run_onnx

        point = np.asarray(found.point, dtype=np.float32).reshape(1, *net.input_shape)
        ort_label = int(np.argmax(np.asarray(run_onnx(net.source, point, net.output_name)).reshape(-1)))
        if save is not None:
            try:
                np.save(save, point)
            except OSError as exc:
                raise InputError(f"{save}: cannot save the adversarial point ({exc.strerror})") from None
    data = report.attack_dict(found, ort_label, time.perf_counter() - start)
    if save is not None and found.found:
        data["saved"] = os.fspath(save)
    if json_:
        emit_json(data)
    elif quiet:
        out.print(f"{found.distance:.10g}")
    elif not found.found:
        out.print(f"no adversarial point found for label {found.label}")
    else:
        agrees = "agrees" if data["onnxruntime_agrees"] else "[bold red]DISAGREES[/bold red]"
        out.print(f"adversarial point at L2 distance [bold]{found.distance:.6g}[/bold] (method {found.method}): "
                  f"label {found.label} → {found.adv_label}")
        out.print(f"  onnxruntime on the float32 point: label {ort_label} ({agrees})")
        out.print("  any certified radius must be below this distance")
        if "saved" in data:
            out.print(f"wrote {data['saved']}")
    if found.found and not data["onnxruntime_agrees"]:
        if not json_:
            err.print(f"error: onnxruntime labels the adversarial point {ort_label}, the IR {found.adv_label}",
                      markup=False)
        raise typer.Exit(1)
    if save is not None and not found.found and not quiet:
        err.print(f"note: no adversarial point found; {save} not written", markup=False)


# The paper's MNIST network ships inside the package, so the demo runs from any directory.
DEMO_MODEL = Path(__file__).resolve().parent.parent / "data" / "mnist_lenet.onnx"


@app.command(cls=Command)
@handles_errors
def demo(model: Annotated[Path, typer.Option(help="Model to analyse.")] = DEMO_MODEL,
         input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Nominal input (default: MODEL_x0.npy).")] = None,
         debug: DebugOpt = False) -> None:
    """The main job on a shipped model: verify, global bound, local bounds, certified radius."""
    net = load_model(model)
    nominal = load_nominal(input or model.with_name(model.stem + "_x0.npy"), net)
    x0 = nominal.x0
    out.print(report.network_table(net))
    ensure_matches(net, [x0])
    check_ = verify(net, x0)
    out.print(f"IR vs onnxruntime: relative difference {check_.relative_diff:.2g} (OK)")
    with progress.bar(out, _bar(False, False), "bounds"):
        g = global_bound(net)
        results = methods.local_bounds(net, x0, [0.001, 0.01, 0.1])
        rad = radius_of(net, x0)
    label, margin = _label_margin(net, x0)
    report.print_bounds(out, results, g.bound, margin, label)
    report.print_radius(out, rad)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
