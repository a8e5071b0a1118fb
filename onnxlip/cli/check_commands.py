"""The CI gate and the demo: check, demo."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from typing_extensions import Annotated

from ..bounds import methods
from ..errors import InputError, OnnxlipError
from . import progress
from .app import Command, app, handles_errors
from .config import CONFIG_NAME, CheckConfig, load_config
from .common import (_bar, CertifiedOpt, check_eps, check_plan, _common, DebugOpt, DeviceOpt, emit_json,
                     ensure_matches, err, evaluate, JsonOpt, junit_xml, KeyOpt, _label_margin,
                     load_model, load_nominal, MeanOpt, _method, MethodOpt, NormOpt, _notes, OneEps, out, plan,
                     QuietOpt, radius_of, _range_dict, RangeOpt, report, StdOpt, _valid_inputs, verify, _warnings,
                     write_junit)

if TYPE_CHECKING:
    pass


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
          key: KeyOpt = None, method: MethodOpt = None, certified: CertifiedOpt = methods.DEFAULT_CERTIFIED, input_range: RangeOpt = None,
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
        g = methods.global_bound_on(net)
        results = methods.local_bounds(net, x0, [0.001, 0.01, 0.1])
        rad = radius_of(net, x0)
    label, margin = _label_margin(net, x0)
    report.print_bounds(out, results, g.bound, margin, label)
    report.print_radius(out, rad)


