"""Command-line interface: a thin Typer layer over the public API.

Exit codes: 0 success, 1 a check failed (e.g. --verify), 2 bad input or error.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import typer
from rich.console import Console
from typing_extensions import Annotated

from . import __version__, report
from .bounds import global_bound, local_bound, sweep
from .errors import OnnxlipError
from .importer import load_model
from .inputs import check_eps, load_input
from .radius import certified_radius
from .verify import verify

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ModelArg = Annotated[Path, typer.Argument(help="ONNX model file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
InputOpt = Annotated[Path, typer.Option("--input", "-i", help="Nominal input x0 (.npy or .npz).")]
KeyOpt = Annotated[Optional[str], typer.Option("--key", help="Array name inside an .npz input.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only the final numbers.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]


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
                raise
            err.print(f"error: {exc}", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None
        except Exception as exc:  # a bug or an input we did not foresee: still one line
            if kwargs.get("debug"):
                raise
            err.print(f"error: internal {type(exc).__name__}: {exc} (rerun with --debug)", soft_wrap=True, markup=False)
            raise typer.Exit(2) from None

    return wrapper


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _version(value: bool) -> None:
    if value:
        out.print(f"onnxlip {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Provable Lipschitz bounds and robustness radii for ReLU networks in ONNX."""


@app.command()
@handles_errors
def inspect(model: ModelArg, verify_: Annotated[bool, typer.Option("--verify", help="Compare the IR with onnxruntime (exit 1 above tolerance).")] = False,
            input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Input for --verify (default: random).")] = None,
            key: KeyOpt = None, json_: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Show the IR the model imports to (one line per node); optionally verify it."""
    net = load_model(model)
    x = load_input(input, net, key) if input else None
    result = verify(net, x) if verify_ else None
    if json_:
        data = report.network_dict(net)
        if result is not None:
            data["verify"] = result.as_dict()
        emit_json(data)
    else:
        out.print(report.network_table(net))
        for warning in net.warnings:
            err.print(f"warning: {warning}")
        if result is not None:
            status = "OK" if result.ok else "MISMATCH"
            out.print(f"verify vs onnxruntime: max abs diff {result.max_abs_diff:.3g}, "
                      f"relative {result.relative_diff:.3g} over {result.samples} inputs: {status}")
    if result is not None and not result.ok:
        raise typer.Exit(1)


@app.command("global")
@handles_errors
def global_(model: ModelArg, json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Global Lipschitz bound: the product of the layers' norms."""
    result = global_bound(load_model(model))
    if json_:
        emit_json(report.global_dict(result))
        return
    if not quiet:
        out.print(report.layer_table(result.layers, "global layer constants", local=False))
    out.print(f"global Lipschitz bound = [bold]{result.bound:.6g}[/bold]")


@app.command()
@handles_errors
def local(model: ModelArg, input: InputOpt, eps: Annotated[List[float], typer.Option("--eps", "-e", help="Ball radius (repeatable).")],
          key: KeyOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Local Lipschitz bound L(x0, eps) on the L2 ball of radius eps around x0."""
    net = load_model(model)
    x0 = load_input(input, net, key)
    results = sweep(net, x0, [check_eps(e) for e in eps])
    if json_:
        emit_json(report.local_dict(results))
    elif quiet:
        for r in results:
            out.print(f"{r.eps:g} {r.bound:.10g}")
    else:
        report.print_bounds(out, results)


@app.command()
@handles_errors
def certify(model: ModelArg, input: InputOpt, label: Annotated[Optional[int], typer.Option("--label", help="Class to certify (default: argmax at x0).")] = None,
            key: KeyOpt = None, json_: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Largest certified L2 robustness radius around x0."""
    net = load_model(model)
    result = certified_radius(net, load_input(input, net, key), label)
    if json_:
        emit_json(report.radius_dict(result))
    else:
        report.print_radius(out, result)


DEMO_MODEL = Path("models/mnist_lenet.onnx")


@app.command()
@handles_errors
def demo(model: Annotated[Path, typer.Option(help="Model to analyse.")] = DEMO_MODEL,
         input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Nominal input (default: MODEL_x0.npy).")] = None,
         debug: DebugOpt = False) -> None:
    """The main job on a shipped model: verify, global bound, local bounds, certified radius."""
    net = load_model(model)
    x0 = load_input(input or model.with_name(model.stem + "_x0.npy"), net)
    out.print(report.network_table(net))
    check = verify(net, x0)
    out.print(f"IR vs onnxruntime: relative difference {check.relative_diff:.2g} ({'OK' if check.ok else 'MISMATCH'})")
    g = global_bound(net)
    report.print_bounds(out, sweep(net, x0, [0.001, 0.01, 0.1]), g.bound)
    report.print_radius(out, certified_radius(net, x0))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
