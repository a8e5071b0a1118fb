"""What the commands share: the lazily loaded engine functions, the consoles, the option
types, JSON output and the handling of shared options (norm, device, method, input range, ε).
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import typer
from rich.console import Console
from typing_extensions import Annotated

from ..bounds import methods
from . import progress
from ..errors import InputError
from ..lazy import lazy_function, lazy_module

if TYPE_CHECKING:
    import numpy as np

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
CertifiedOpt = Annotated[bool, typer.Option("--certified/--estimate", metavar="", help="Provable norms (exact SVD, Cholesky-proven Lanczos, FFT or l1-linf bounds, rounding "
                                            "accounted for; the default), or --estimate: converged Lanczos estimates, "
                                            "faster on large networks, not a proof.")]
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

