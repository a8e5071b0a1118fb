"""Side-by-side certified L2 radii on ResNets: onnxlip vs auto_LiRPA's CROWN and α-CROWN, plus the
smallest adversarial distance onnxlip's attack finds (an upper bound on any sound radius).

Models: the two ResNets of the VNN-COMP corpus at the centre of their .vnnlib input box, and the
shipped resnet_small at its x0. For each, the ONNX model is loaded into torch (onnx2torch), checked
against onnxruntime at x0 (1e-4), wrapped in auto_LiRPA's BoundedModule, and the largest eps is
found by bisection (relative tolerance 1e-2) such that the lower bounds of all margins
y_c - y_j (c = argmax at x0) are > 0 over the L2 ball of radius eps (no input clipping).
onnxlip runs through its CLI (``onnxlip certify/attack MODEL --input X --json``, default options).

The peers need torch, auto_LiRPA and onnx2torch, so run this in their own virtualenv, e.g.

    python -m venv ../venv-peers && ../venv-peers/bin/pip install torch==2.13.0 onnx onnxruntime
    ../venv-peers/bin/pip install --no-deps onnx2torch   # its torchvision would upgrade torch
    ../venv-peers/bin/pip install <an auto_LiRPA checkout>   # 0.7 or newer
    ../venv-peers/bin/python tools/compare_resnets.py [--models sri_resnet_b ...] [--skip-alpha]

with onnxlip's CLI taken from --onnxlip (default: ``onnxlip`` on PATH). torch 2.14 zeroes
auto_LiRPA's α gradients at the clamp bounds, so α-CROWN cannot move there: keep 2.13.
A peer that fails on a model (load, op support, mismatch) is recorded in the table, not raised.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"  # the VNN-COMP development corpus beside the checkout
MODELS = {
    "cifar10_resnet_4b": (CORPUS / "cifar10_resnet_4b.onnx", CORPUS / "cifar10_resnet_4b.vnnlib"),
    "sri_resnet_b": (CORPUS / "sri_resnet_b.onnx", CORPUS / "sri_resnet_b.vnnlib"),
    "resnet_small": (ROOT / "models" / "resnet_small.onnx", ROOT / "models" / "resnet_small_x0.npy"),
}
RTOL = 1e-2
BOUND = re.compile(r"\(\s*(<=|>=)\s+X_(\d+)\s+([-+0-9.eE]+)\s*\)")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs and models

def input_shape(onnx_path: Path) -> list[int]:
    import onnx
    model = onnx.load(str(onnx_path))
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
    return dims


def vnnlib_centre(path: Path, n: int) -> np.ndarray:
    """Centre of the (>= X_i lo) (<= X_i hi) box of a .vnnlib property (first n inputs)."""
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for op, i, v in BOUND.findall(path.read_text()):
        i = int(i)
        if i < n:
            (lo if op == ">=" else hi)[i] = float(v)
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError(f"{path}: box bounds missing for some of the {n} inputs")
    return (lo + hi) / 2


def load_x0(onnx_path: Path, input_path: Path) -> np.ndarray:
    shape = input_shape(onnx_path)
    if input_path.suffix == ".vnnlib":
        return vnnlib_centre(input_path, int(np.prod(shape))).reshape(shape).astype(np.float32)
    return np.load(input_path).astype(np.float32).reshape(shape)


def ort_logits(onnx_path: Path, x0: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x0})[0]


def folded_onnx(onnx_path: Path, shape: list[int]) -> str:
    """The model with batch fixed and constants folded by onnxruntime (drops Shape/Gather chains)."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(onnx_path))
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        d.Clear()
        d.dim_value = v
    tmp = tempfile.mkdtemp(prefix="compare_resnets_")
    fixed, out = os.path.join(tmp, "fixed.onnx"), os.path.join(tmp, "folded.onnx")
    onnx.save(model, fixed)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = out
    ort.InferenceSession(fixed, opts, providers=["CPUExecutionProvider"])
    return out


def import_onnx2torch():
    """onnx2torch imports torchvision for NMS/RoIAlign only; PyPI's torchvision does not import beside
    the CPU torch 2.13.0 used here, so stand in an empty module for it when it is missing (no
    ResNet here uses those ops)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or broken
        import types
        stub = types.ModuleType("torchvision")
        stub.ops = types.ModuleType("torchvision.ops")
        stub.ops.roi_align = stub.ops.nms = stub.ops.box_convert = None
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, stub.ops
    from onnx2torch import convert
    return convert


def clamp_grad_ok() -> bool:
    """α-CROWN needs a nonzero gradient of clamp(α, 0, 1) at α = 0 and 1, where CROWN starts the
    slopes; torch 2.14 gives 0 there, which leaves α-CROWN stuck at CROWN's bound."""
    import torch
    a = torch.tensor([0.0, 1.0], requires_grad=True)
    torch.clamp(a, min=0.0, max=1.0).sum().backward()
    return bool((a.grad != 0).all())


def torch_model(onnx_path: Path, x0: np.ndarray, expected: np.ndarray):
    """onnx2torch conversion, checked against onnxruntime at x0 to 1e-4."""
    import torch
    convert = import_onnx2torch()
    model = convert(str(onnx_path)).eval()
    with torch.no_grad():
        got = model(torch.from_numpy(x0)).numpy()
    err = float(np.abs(got - expected).max())
    if err > 1e-4:
        raise RuntimeError(f"torch vs onnxruntime mismatch {err:.2e} > 1e-4")
    return model, err


def bounded_module(onnx_path: Path, x0: np.ndarray, expected: np.ndarray):
    """BoundedModule of the model; if the raw graph fails, retry on the constant-folded graph."""
    import torch
    from auto_LiRPA import BoundedModule
    errors = []
    for label, path in (("raw", onnx_path), ("folded", None)):
        try:
            if path is None:
                path = Path(folded_onnx(onnx_path, list(x0.shape)))
            model, err = torch_model(path, x0, expected)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bm = BoundedModule(model, torch.zeros_like(torch.from_numpy(x0)), device="cpu",
                                   bound_opts={"conv_mode": "patches", "verbosity": 0})
            with torch.no_grad():
                got = bm(torch.from_numpy(x0)).numpy()
            err = max(err, float(np.abs(got - expected).max()))
            if err > 1e-4:
                raise RuntimeError(f"BoundedModule vs onnxruntime mismatch {err:.2e} > 1e-4")
            return bm, f"{label} graph, max |torch - ort| = {err:.1e}"
        except Exception as exc:  # noqa: BLE001 - record, try the next way
            errors.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
            log(traceback.format_exc(limit=3))
    raise RuntimeError("; ".join(errors))


# ---------------------------------------------------------------- auto_LiRPA radii

def margin_C(label: int, n: int):
    import torch
    others = [j for j in range(n) if j != label]
    C = torch.zeros(1, n - 1, n)
    for k, j in enumerate(others):
        C[0, k, label] = 1.0
        C[0, k, j] = -1.0
    return C


def proves(bm, x0, C, eps: float, method: str) -> bool:
    import torch
    from auto_LiRPA import BoundedTensor, PerturbationLpNorm
    x = BoundedTensor(torch.from_numpy(x0), PerturbationLpNorm(norm=2, eps=eps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lb, _ = bm.compute_bounds(x=(x,), C=C, method=method, bound_upper=False)
    return bool(torch.isfinite(lb).all() and (lb > 0).all())


def bisect_radius(bm, x0, C, method: str, lo: float = 0.0, start: float = 1e-3,
                  budget: float = math.inf) -> dict:
    """Largest eps proven, to relative tolerance RTOL: bracket, then bisect.

    From scratch the bracket grows by factors of 2 from ``start``. From ``lo`` > 0 (a radius another
    method proved: CROWN's, for α-CROWN; checked first) it grows by 2 %, 4 %, 8 %, ...: α-CROWN
    rarely gains much over CROWN, and one α-CROWN call far past the radius can take minutes (its
    slopes grow with the unstable units). ``budget`` caps the seconds spent between calls, after
    which the best eps proven so far is reported (with ``complete`` False).
    """
    t0 = time.perf_counter()
    calls = 0

    def test(eps):
        nonlocal calls
        calls += 1
        ok = proves(bm, x0, C, eps, method)
        log(f"    {method} eps={eps:.5g}: {'proven' if ok else 'not proven'}"
            f" ({time.perf_counter() - t0:.1f} s)")
        return ok

    def out(lo, hi, complete=True):
        return {"radius": lo, "upper": hi, "seconds": time.perf_counter() - t0, "calls": calls,
                "complete": complete}

    hi = math.inf
    step = 2 * RTOL if lo > 0 else 1.0
    if lo > 0 and not test(lo):  # the known radius must hold for this method too
        lo, start, step = 0.0, lo / 2, 1.0
    eps = lo * (1 + step) if lo > 0 else start
    while True:  # bracket
        if time.perf_counter() - t0 > budget:
            return out(lo, hi, False)
        if test(eps):
            lo = eps
            if eps > 1e6:
                return out(lo, hi, False)
            step = min(2 * step, 1.0)
            eps = lo * (1 + step)
        else:
            hi = eps
            if lo > 0:
                break
            eps /= 2
            if eps < 1e-12:
                return out(0.0, hi)
    while hi > lo * (1 + RTOL):  # bisect (geometric mean: scale-free)
        if time.perf_counter() - t0 > budget:
            return out(lo, hi, False)
        mid = math.sqrt(lo * hi)
        if test(mid):
            lo = mid
        else:
            hi = mid
    return out(lo, hi)


# ---------------------------------------------------------------- onnxlip CLI

def onnxlip_json(exe: str, cmd: str, model: Path, inp: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([exe, cmd, str(model), "--input", str(inp), "--json"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    text = proc.stdout
    start = text.find("{")
    if proc.returncode != 0 or start < 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {proc.returncode}: {tail[0][:200]}", "wall": wall}
    data = json.loads(text[start:text.rfind("}") + 1])
    data["wall"] = wall
    return data


# ---------------------------------------------------------------- one model

def run_model(name: str, args) -> dict:
    onnx_path, input_path = MODELS[name]
    res: dict = {"model": name}
    log(f"== {name}")
    x0 = load_x0(onnx_path, input_path)
    logits = ort_logits(onnx_path, x0)
    label = int(np.argmax(logits))
    srt = np.sort(logits.ravel())
    res.update(label=label, margin=float(srt[-1] - srt[-2]), input_shape=list(x0.shape))

    # auto_LiRPA
    try:
        import torch
        torch.manual_seed(0)
        t0 = time.perf_counter()
        bm, note = bounded_module(onnx_path, x0, logits)
        res["lirpa_build_s"] = time.perf_counter() - t0
        res["lirpa_note"] = note
        log(f"  BoundedModule: {note} ({res['lirpa_build_s']:.1f} s)")
        C = margin_C(label, logits.shape[-1])
        try:
            res["crown"] = bisect_radius(bm, x0, C, "CROWN", budget=args.crown_budget)
        except Exception as exc:  # noqa: BLE001
            log(traceback.format_exc(limit=4))
            res["crown"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        if args.skip_alpha:
            res["alpha"] = {"error": "skipped"}
        elif not clamp_grad_ok():
            res["alpha"] = {"error": f"torch {torch.__version__}: zero clamp gradient at 0/1, "
                                     "α-CROWN cannot move off CROWN (use torch 2.13.0)"}
        else:
            try:
                bm.set_bound_opts({"optimize_bound_args": {
                    "iteration": args.alpha_iters, "lr_alpha": 0.1, "early_stop_patience": 10,
                    "max_time": args.alpha_budget,
                    "stop_criterion_func": lambda lb: (lb > 0).all(dim=1, keepdim=True)}})
                crown_r = res["crown"].get("radius", 0.0) or 0.0
                res["alpha"] = bisect_radius(bm, x0, C, "CROWN-Optimized", lo=crown_r,
                                             budget=args.alpha_budget)
            except Exception as exc:  # noqa: BLE001
                log(traceback.format_exc(limit=4))
                res["alpha"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    except Exception as exc:  # noqa: BLE001
        msg = f"does not load: {exc}"[:300]
        res["crown"] = res["alpha"] = {"error": msg}
        log(f"  auto_LiRPA {msg}")

    # onnxlip
    log("  onnxlip certify ...")
    res["onnxlip"] = onnxlip_json(args.onnxlip, "certify", onnx_path, input_path, args.timeout)
    log(f"  -> {res['onnxlip'].get('radius', res['onnxlip'].get('error'))}")
    log("  onnxlip attack ...")
    res["attack"] = onnxlip_json(args.onnxlip, "attack", onnx_path, input_path, args.timeout)
    log(f"  -> {res['attack'].get('distance', res['attack'].get('error'))}")
    return res


def fmt_peer(r: dict) -> str:
    if "error" in r:
        return r["error"]
    s = f"{r['radius']:.4g} [< {r['upper']:.4g}] ({r['seconds']:.1f} s, {r['calls']} calls)"
    if not r["complete"]:
        s += " budget hit"
    return s


def row(res: dict) -> str:
    ol = res["onnxlip"]
    ol_s = ol["error"] if "error" in ol else f"{ol['radius']:.4g} ({ol['method']}, {ol['seconds']:.1f} s)"
    at = res["attack"]
    at_s = at["error"] if "error" in at else (
        f"{at['distance']:.4g} ({at['method']}, {at['seconds']:.1f} s)" if at.get("found") else "none found")
    return f"| {res['model']} | {ol_s} | {fmt_peer(res['crown'])} | {fmt_peer(res['alpha'])} | {at_s} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--skip-alpha", action="store_true", help="skip α-CROWN")
    parser.add_argument("--alpha-iters", type=int, default=20, help="α-CROWN iterations per eps (default 20)")
    parser.add_argument("--alpha-budget", type=float, default=400.0,
                        help="seconds of α-CROWN bisection per model (default 400)")
    parser.add_argument("--crown-budget", type=float, default=900.0,
                        help="seconds of CROWN bisection per model (default 900)")
    parser.add_argument("--onnxlip", default=None, help="onnxlip executable")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per onnxlip CLI call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write all results as JSON")
    args = parser.parse_args()
    if args.onnxlip is None:
        args.onnxlip = shutil.which("onnxlip")
    if not args.onnxlip:
        parser.error("onnxlip CLI not found: pass --onnxlip")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)

    results = [run_model(name, args) for name in args.models]
    print("| model | onnxlip radius (method, s) | CROWN radius [< eps not proven] (s) "
          "| α-CROWN radius [< eps not proven] (s) | attack distance |")
    print("|---|---|---|---|---|")
    for res in results:
        print(row(res))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
