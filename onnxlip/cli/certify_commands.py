"""Commands about the certified radius: certify (one input or many), attack."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from typing_extensions import Annotated

from ..bounds import methods
from ..errors import InputError
from . import progress
from .app import Command, app, handles_errors
from .common import (_bar, batch_progress, _beat, _box, BranchOpt, CertifiedOpt, check_input, _common, DatasetOptions,
                     DebugOpt, DeviceOpt, emit_json, ensure_matches, err, InputOpt, JsonOpt, KeyOpt, load_model,
                     load_nominal, MeanOpt, _method, MethodOpt, min_adversarial_distance, ModelArg, NormOpt, _notes,
                     np, OptInput, out, QuietOpt, radius_of, _range_dict, _range_note, RangeOpt, read_array, report,
                     run_dataset, StdOpt, _valid_inputs, _warnings, _write_csv)

if TYPE_CHECKING:
    from ..batch.dataset import Options
    from ..bounds.domain import InputRange
    from ..graph.network import Network


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
            key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = methods.DEFAULT_CERTIFIED, input_range: RangeOpt = None,
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
