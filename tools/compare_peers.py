"""Side-by-side certified L2 radii on conv nets: onnxlip vs auto_LiRPA's CROWN and α-CROWN, plus the
smallest adversarial distance onnxlip's attack finds (an upper bound on any sound radius).

Models: the paper nets shipped in models/ (mnist_lenet, cifar10_net) and resnet_small at their x0,
and every conv classifier of the VNN-COMP corpus (../shared/corpus) at the centre of its .vnnlib
input box. For each, the ONNX model is loaded into torch (onnx2torch), every MaxPool is rewritten
exactly with ReLUs (below), the result is checked against onnxruntime at x0 (1e-4), wrapped in
auto_LiRPA's BoundedModule, and the largest eps is found by bisection (relative tolerance 1e-2)
such that the lower bounds of all margins y_c - y_j (c = argmax at x0) are > 0 over the L2 ball of
radius eps (no input clipping). onnxlip runs through its CLI (``onnxlip certify/attack MODEL
--input X --json``, default options).

The max-pool rewrite: auto_LiRPA's own max-pool relaxation is loose, so each max-pool window is
computed as a tree of pairwise maxima max(a, b) = b + ReLU(a - b) (a 2×2 window:
max(max(a, b), max(c, d))), whose ReLUs CROWN and α-CROWN relax as any other. The taps of the
windows come from fixed one-hot convolutions; a tap that falls in the padding (which for a max-pool
never wins) is replaced by a valid tap of the same window, through constant masks. ``--native-maxpool``
keeps auto_LiRPA's max-pool instead; ``--check-maxpool`` checks the rewrite on ONNX MaxPool nodes
with various kernels, strides, dilations, pads and ceil_mode against onnxruntime, and its CROWN
bounds against samples. auto_LiRPA bounds convolutions in its patches mode, except for a model with
a native max-pool (its α are optimised in matrix mode only) or with such masks (patches mode
multiplies by per-channel constants only): those in matrix mode, the same bounds at more cost.

The peers need torch, auto_LiRPA and onnx2torch, so run this in their own virtualenv, e.g.

    python -m venv ../venv-peers && ../venv-peers/bin/pip install torch==2.13.0 onnx onnxruntime
    ../venv-peers/bin/pip install --no-deps onnx2torch   # its torchvision would upgrade torch
    ../venv-peers/bin/pip install <an auto_LiRPA checkout>   # 0.7 or newer
    ../venv-peers/bin/python tools/compare_peers.py --threads 1 --peers-json tools/peer_radii.json \\
        [--models mnist_lenet ...] [--skip-alpha] [--skip-onnxlip] [--native-maxpool]

with onnxlip's CLI taken from --onnxlip (default: ``onnxlip`` on PATH). torch 2.14 zeroes
auto_LiRPA's α gradients at the clamp bounds, so α-CROWN cannot move there: keep 2.13.

``--peers-json FILE`` caches the auto_LiRPA results per model (and max-pool variant): a model found
there (at the same label and margin) is not bounded again unless ``--rerun-peers``, so the onnxlip
columns can be measured again without the slow α-CROWN bisections, even from an environment
without torch (then only onnx and onnxruntime are needed). The file is written after each model.
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
# name: (ONNX file, x0 (.npy) or .vnnlib whose box centre is x0, default α-CROWN seconds)
MODELS = {
    "mnist_lenet": (ROOT / "models" / "mnist_lenet.onnx", ROOT / "models" / "mnist_lenet_x0.npy", 400.0),
    # one α-CROWN bound takes 270-400 s on 2 cores
    "cifar10_net": (ROOT / "models" / "cifar10_net.onnx", ROOT / "models" / "cifar10_net_x0.npy", 1500.0),
    "cifar10_resnet_4b": (CORPUS / "cifar10_resnet_4b.onnx", CORPUS / "cifar10_resnet_4b.vnnlib", 400.0),
    "sri_resnet_b": (CORPUS / "sri_resnet_b.onnx", CORPUS / "sri_resnet_b.vnnlib", 400.0),
    "oval21_cifar_deep_kw": (CORPUS / "oval21_cifar_deep_kw.onnx", CORPUS / "oval21_cifar_deep_kw.vnnlib", 400.0),
    "marabou_cifar10_medium": (CORPUS / "marabou_cifar10_medium.onnx", CORPUS / "marabou_cifar10_medium.vnnlib",
                               400.0),
    "resnet_small": (ROOT / "models" / "resnet_small.onnx", ROOT / "models" / "resnet_small_x0.npy", 400.0),
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
    tmp = tempfile.mkdtemp(prefix="compare_peers_")
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
    model here uses those ops)."""
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


def set_torch_threads(n: int) -> None:
    """torch's thread count (0: torch's default). torch is imported only where the peers run, so a
    run on cached peers works without it."""
    if n:
        import torch
        torch.set_num_threads(n)


def clamp_grad_ok() -> bool:
    """α-CROWN needs a nonzero gradient of clamp(α, 0, 1) at α = 0 and 1, where CROWN starts the
    slopes; torch 2.14 gives 0 there, which leaves α-CROWN stuck at CROWN's bound."""
    import torch
    a = torch.tensor([0.0, 1.0], requires_grad=True)
    torch.clamp(a, min=0.0, max=1.0).sum().backward()
    return bool((a.grad != 0).all())


# ---------------------------------------------------------------- max-pool rewrite

def relu_maxpool_module(channels: int, size: tuple[int, int], kernel, stride, dilation,
                        pads: tuple[int, int, int, int], ceil_mode: bool):
    """A torch module computing max_pool2d exactly with one-hot convolutions and ReLUs.

    ``pads`` = (top, bottom, left, right) count as -inf (a padded tap never wins). Tap (i, j) of
    every window is a convolution, channel c -> c, with a fixed kernel that is 1 at one place (a dense
    kernel: auto_LiRPA's patches mode has no grouped convolutions); its zero padding is symmetric
    (auto_LiRPA's too) and the kernel is sized to give exactly the pool's output. Where a tap falls in
    the padding it reads 0 and gets the window's first valid tap added (constant masks). The taps
    are reduced pairwise, max(a, b) = b + ReLU(a - b).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    def axis(n, k, s, d, before, after):
        """Along one axis: the output length, the conv's padding, kernel length and the offset of tap
        0 in it, and the tap-validity table (out, k)."""
        span = d * (k - 1) + 1
        out = (math.ceil if ceil_mode else math.floor)((n + before + after - span) / s) + 1
        if ceil_mode and (out - 1) * s >= n + before:  # torch: the last window starts inside
            out -= 1
        pad = max(before, (out - 1) * s + span - n - before)  # enough on both sides
        pos = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d  # coordinate of each tap, padded by before
        return out, pad, n + 2 * pad - (out - 1) * s, pad - before, (pos >= before) & (pos < before + n)

    (kh, kw), (sh, sw), (dh, dw) = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                                    for v in (kernel, stride, dilation))
    top, bottom, left, right = pads
    oh, pad_h, len_h, off_h, valid_h = axis(size[0], kh, sh, dh, top, bottom)
    ow, pad_w, len_w, off_w, valid_w = axis(size[1], kw, sw, dw, left, right)
    valid = (valid_h[:, None, :, None] & valid_w[None, :, None, :]).reshape(oh, ow, kh * kw)
    if not valid.any(axis=2).all():
        raise ValueError("a max-pool window lies wholly in the padding")
    first = valid.argmax(axis=2)  # each window's first valid tap

    class ReluMaxPool2d(nn.Module):
        def __init__(self):
            super().__init__()
            self.padding = (pad_h, pad_w)
            self.stride = (sh, sw)
            self.taps = kh * kw
            self.anchor_taps = sorted(set(first[~valid.all(axis=2)].tolist()))  # first taps of padded windows
            self.masked_taps = [t for t in range(self.taps) if not valid[:, :, t].all()]
            eye = torch.arange(channels)
            for t in range(self.taps):
                weight = torch.zeros(channels, channels, len_h, len_w)
                weight[eye, eye, off_h + (t // kw) * dh, off_w + (t % kw) * dw] = 1.0
                self.register_buffer(f"weight{t}", weight)
                self.register_buffer(f"invalid{t}", torch.from_numpy(~valid[None, None, :, :, t]).float())
                self.register_buffer(f"first{t}", torch.from_numpy(first[None, None] == t).float())

        def forward(self, x):
            taps = [F.conv2d(x, getattr(self, f"weight{t}"), stride=self.stride, padding=self.padding)
                    for t in range(self.taps)]
            if self.masked_taps:
                anchor = None
                for t in self.anchor_taps:
                    term = taps[t] * getattr(self, f"first{t}")
                    anchor = term if anchor is None else anchor + term
                for t in self.masked_taps:
                    taps[t] = taps[t] + anchor * getattr(self, f"invalid{t}")
            while len(taps) > 1:
                pairs = [b + F.relu(a - b) for a, b in zip(taps[::2], taps[1::2])]
                taps = pairs + taps[len(pairs) * 2:]
            return taps[0]

    return ReluMaxPool2d()


def rewrite_maxpools(model, x0: np.ndarray) -> int:
    """Replace each 2-D max-pool of an onnx2torch model (an nn.MaxPool2d, or for asymmetric pads
    onnx2torch's nn.Sequential(OnnxPadStatic(-inf), nn.MaxPool2d)) by ``relu_maxpool_module``, in
    place; returns how many. Input shapes are read by running the model once at x0."""
    import torch
    from torch import nn
    from onnx2torch.node_converters.pad import OnnxPadStatic

    found = {}  # qualified name -> (module, torch pads (left, right, top, bottom), the nn.MaxPool2d)
    for name, mod in model.named_modules():
        if name.rpartition(".")[0] in found:  # the nn.MaxPool2d of a padded pair
            continue
        if (isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[0], OnnxPadStatic)
                and isinstance(mod[1], nn.MaxPool2d)):
            if mod[0].mode != "constant" or any(mod[0].pads[4:]):
                raise NotImplementedError(f"{name}: max-pool padding {mod[0].mode} {mod[0].pads}")
            found[name] = (mod, tuple(mod[0].pads[:4]), mod[1])
        elif isinstance(mod, nn.MaxPool2d):
            found[name] = (mod, (0, 0, 0, 0), mod)
        elif "MaxPool" in type(mod).__name__:
            raise NotImplementedError(f"{name}: {type(mod).__name__} is not rewritten")
    shapes = {}
    hooks = [mod.register_forward_pre_hook(lambda _m, inp, name=name: shapes.__setitem__(name, inp[0].shape))
             for name, (mod, _, _) in found.items()]
    with torch.no_grad():
        model(torch.from_numpy(x0))
    for hook in hooks:
        hook.remove()
    for name, (_, (left, right, top, bottom), pool) in found.items():
        if pool.return_indices:
            raise NotImplementedError(f"{name}: max-pool with indices")
        sym = tuple(pool.padding) if isinstance(pool.padding, (tuple, list)) else (pool.padding, pool.padding)
        _, channels, h, w = shapes[name]
        new = relu_maxpool_module(channels, (h, w), pool.kernel_size, pool.stride, pool.dilation,
                                  (top + sym[0], bottom + sym[0], left + sym[1], right + sym[1]),
                                  pool.ceil_mode)
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    return len(found)


def conv_mode(model) -> str:
    """auto_LiRPA's conv_mode for the model: patches, or matrix where it keeps a native max-pool
    (auto_LiRPA optimises those α in matrix mode only) or a rewritten max-pool masks padded taps
    (patches mode multiplies by per-channel constants only)."""
    from torch import nn
    if any(isinstance(mod, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) or getattr(mod, "masked_taps", None)
           for mod in model.modules()):
        return "matrix"
    return "patches"


def torch_model(onnx_path: Path, x0: np.ndarray, expected: np.ndarray, native_maxpool: bool):
    """onnx2torch conversion, max-pools rewritten unless native_maxpool, checked against
    onnxruntime at x0 to 1e-4. Returns (model, max error, number of max-pools rewritten)."""
    import torch
    convert = import_onnx2torch()
    model = convert(str(onnx_path)).eval()
    rewritten = 0 if native_maxpool else rewrite_maxpools(model, x0)
    with torch.no_grad():
        got = model(torch.from_numpy(x0)).numpy()
    err = float(np.abs(got - expected).max())
    if err > 1e-4:
        raise RuntimeError(f"torch vs onnxruntime mismatch {err:.2e} > 1e-4")
    return model, err, rewritten


def bounded_module(onnx_path: Path, x0: np.ndarray, expected: np.ndarray, native_maxpool: bool):
    """BoundedModule of the model; if the raw graph fails, retry on the constant-folded graph."""
    import torch
    from auto_LiRPA import BoundedModule
    errors = []
    for label, path in (("raw", onnx_path), ("folded", None)):
        try:
            if path is None:
                path = Path(folded_onnx(onnx_path, list(x0.shape)))
            model, err, rewritten = torch_model(path, x0, expected, native_maxpool)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bm = BoundedModule(model, torch.zeros_like(torch.from_numpy(x0)), device="cpu",
                                   bound_opts={"conv_mode": conv_mode(model), "verbosity": 0})
            with torch.no_grad():
                got = bm(torch.from_numpy(x0)).numpy()
            err = max(err, float(np.abs(got - expected).max()))
            if err > 1e-4:
                raise RuntimeError(f"BoundedModule vs onnxruntime mismatch {err:.2e} > 1e-4")
            how = "native max-pool" if native_maxpool else f"{rewritten} max-pools rewritten"
            return bm, f"{label} graph, {how}, {conv_mode(model)} mode, max |torch - ort| = {err:.1e}"
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


def peer_radii(onnx_path: Path, x0: np.ndarray, logits: np.ndarray, args, alpha_budget: float) -> dict:
    """auto_LiRPA's CROWN and α-CROWN radii at x0 (failures recorded as {"error": ...})."""
    import torch
    import auto_LiRPA
    set_torch_threads(args.threads)
    torch.manual_seed(0)
    res: dict = {"maxpool": "native" if args.native_maxpool else "relu",
                 "settings": {"alpha_iters": args.alpha_iters, "alpha_budget": alpha_budget,
                              "crown_budget": args.crown_budget, "rtol": RTOL, "threads": torch.get_num_threads()},
                 "versions": {"torch": torch.__version__, "auto_LiRPA": auto_LiRPA.__version__}}
    try:
        t0 = time.perf_counter()
        bm, note = bounded_module(onnx_path, x0, logits, args.native_maxpool)
    except Exception as exc:  # noqa: BLE001
        msg = f"does not load: {exc}"[:300]
        log(f"  auto_LiRPA {msg}")
        return {**res, "crown": {"error": msg}, "alpha": {"error": msg}}
    res.update(build_s=time.perf_counter() - t0, note=note)
    log(f"  BoundedModule: {note} ({res['build_s']:.1f} s)")
    C = margin_C(int(np.argmax(logits)), logits.shape[-1])
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
                "max_time": alpha_budget,
                "stop_criterion_func": lambda lb: (lb > 0).all(dim=1, keepdim=True)}})
            res["alpha"] = bisect_radius(bm, x0, C, "CROWN-Optimized", lo=res["crown"].get("radius", 0.0) or 0.0,
                                         budget=alpha_budget)
        except Exception as exc:  # noqa: BLE001
            log(traceback.format_exc(limit=4))
            res["alpha"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return res


# ---------------------------------------------------------------- peers cache

def cache_key(name: str, native_maxpool: bool) -> str:
    return f"{name} (native max-pool)" if native_maxpool else name


def load_cache(path: Path | None) -> dict:
    return json.loads(path.read_text()) if path and path.exists() else {}


def cached_peers(cache: dict, key: str, label: int, margin: float, want_alpha: bool) -> dict | None:
    """The cached entry for key, if it was measured at the same x0 (same label and margin) and has
    α-CROWN where that is wanted."""
    entry = cache.get(key)
    if (entry and entry.get("label") == label and math.isclose(entry.get("margin", math.nan), margin, rel_tol=1e-5)
            and not (want_alpha and entry["alpha"].get("error") == "skipped")):
        return entry
    return None


def save_cache(path: Path, cache: dict) -> None:
    path.write_text(json.dumps(cache, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------- max-pool rewrite check

def maxpool_onnx(h: int, w: int, kernel, strides, pads, dilations, ceil_mode: int) -> Path:
    """A file with one ONNX MaxPool on a (1, 3, h, w) input, then an identity 1×1 Conv (BoundedModule
    needs a parameter)."""
    import onnx
    from onnx import TensorProto, helper
    pool = helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=kernel, strides=strides, pads=pads,
                            dilations=dilations, ceil_mode=ceil_mode)
    eye = helper.make_tensor("eye", TensorProto.FLOAT, [3, 3, 1, 1], np.eye(3).ravel().tolist())
    conv = helper.make_node("Conv", ["p", "eye"], ["y"])
    graph = helper.make_graph([pool, conv], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [eye])
    path = Path(tempfile.mkdtemp(prefix="compare_peers_")) / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)]), str(path))
    return path


def check_maxpool() -> bool:
    """The rewrite on single ONNX MaxPool nodes against onnxruntime (random inputs), and auto_LiRPA's
    CROWN bounds of the rewrite at eps = 0.5 (L2) against 200 points sampled in the ball."""
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    cases = [  # (input H, W, kernel, strides, pads (t, l, b, r), dilations, ceil_mode)
        (8, 8, [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], 0),
        (9, 7, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0),
        (9, 7, [3, 2], [2, 1], [1, 0, 1, 1], [1, 1], 0),  # asymmetric: onnx2torch pads with -inf
        (7, 7, [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1),
        (8, 8, [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1),  # the last window overhangs the input
        (8, 9, [2, 3], [3, 2], [1, 1, 1, 1], [1, 1], 1),
        (10, 10, [3, 3], [1, 1], [1, 1, 1, 1], [2, 2], 0),
        (10, 10, [3, 3], [2, 1], [2, 0, 0, 2], [2, 2], 0),
        (6, 6, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 0),
    ]
    rng = np.random.default_rng(0)
    convert = import_onnx2torch()
    ok = True
    for case in cases:
        h, w = case[:2]
        path = maxpool_onnx(*case)
        x0 = rng.standard_normal((1, 3, h, w)).astype(np.float32)
        model = convert(str(path)).eval()
        rewrite_maxpools(model, x0)
        err = 0.0
        for x in rng.standard_normal((5, 1, 3, h, w)).astype(np.float32):
            ref = ort_logits(path, x)
            with torch.no_grad():
                got = model(torch.from_numpy(x)).numpy()
            err = max(err, float(np.abs(got - ref).max()) if got.shape == ref.shape else math.inf)
        bm = BoundedModule(model, torch.from_numpy(x0), device="cpu",
                           bound_opts={"conv_mode": conv_mode(model), "verbosity": 0})
        ball = BoundedTensor(torch.from_numpy(x0), PerturbationLpNorm(norm=2, eps=0.5))
        lb, ub = bm.compute_bounds(x=(ball,), method="CROWN")
        d = rng.standard_normal((200, 3, h, w)).astype(np.float32)
        d *= (0.5 * rng.uniform(0, 1, 200) / np.linalg.norm(d.reshape(200, -1), axis=1)).astype(np.float32)[
            :, None, None, None]
        with torch.no_grad():
            ys = model(torch.from_numpy(x0 + d))
        sound = bool((ys >= lb - 1e-5).all() and (ys <= ub + 1e-5).all())
        ok &= err <= 1e-6 and sound
        print(f"{'ok  ' if err <= 1e-6 and sound else 'FAIL'} {h}x{w} kernel {case[2]} strides {case[3]} "
              f"pads {case[4]} dilations {case[5]} ceil {case[6]}: max |rewrite - ort| {err:.1e}, "
              f"CROWN sound {sound} ({conv_mode(model)} mode)")
    print(f"max-pool rewrite check {'passed' if ok else 'FAILED'}")
    return ok


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

def run_model(name: str, args, cache: dict) -> dict:
    onnx_path, input_path, alpha_budget = MODELS[name]
    log(f"== {name}")
    x0 = load_x0(onnx_path, input_path)
    logits = ort_logits(onnx_path, x0)
    label = int(np.argmax(logits))
    srt = np.sort(logits.ravel())
    res: dict = {"model": name, "label": label, "margin": float(srt[-1] - srt[-2]), "input_shape": list(x0.shape)}

    key = cache_key(name, args.native_maxpool)
    peers = None if args.rerun_peers else cached_peers(cache, key, label, res["margin"], not args.skip_alpha)
    if peers is None:
        peers = peer_radii(onnx_path, x0, logits, args, alpha_budget if args.alpha_budget is None
                           else args.alpha_budget)
        peers.update(label=label, margin=res["margin"])
        if args.peers_json:
            cache[key] = peers
            save_cache(args.peers_json, cache)
    else:
        log(f"  peers from {args.peers_json} ({peers.get('note', '')})")
    res["peers"] = peers

    if args.skip_onnxlip:
        res["onnxlip"] = res["attack"] = {"error": "skipped"}
        return res
    log("  onnxlip certify ...")
    res["onnxlip"] = onnxlip_json(args.onnxlip, "certify", onnx_path, input_path, args.timeout)
    log(f"  -> {res['onnxlip'].get('radius', res['onnxlip'].get('error'))}")
    log("  onnxlip attack ...")
    res["attack"] = onnxlip_json(args.onnxlip, "attack", onnx_path, input_path, args.timeout)
    log(f"  -> {res['attack'].get('distance', res['attack'].get('error'))}")
    return res


# ---------------------------------------------------------------- table

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
    peers = res["peers"]
    name = cache_key(res["model"], peers["maxpool"] == "native")
    return f"| {name} | {ol_s} | {fmt_peer(peers['crown'])} | {fmt_peer(peers['alpha'])} | {at_s} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--skip-alpha", action="store_true", help="skip α-CROWN")
    parser.add_argument("--skip-onnxlip", action="store_true", help="measure the peers only")
    parser.add_argument("--native-maxpool", action="store_true",
                        help="keep auto_LiRPA's own max-pool relaxation (no ReLU rewrite)")
    parser.add_argument("--check-maxpool", action="store_true",
                        help="only check the max-pool rewrite on single MaxPool nodes, then exit")
    parser.add_argument("--peers-json", type=Path, default=None,
                        help="cache of the auto_LiRPA results per model: read, and updated after each model")
    parser.add_argument("--rerun-peers", action="store_true", help="bound again models found in --peers-json")
    parser.add_argument("--alpha-iters", type=int, default=20, help="α-CROWN iterations per eps (default 20)")
    parser.add_argument("--alpha-budget", type=float, default=None,
                        help="seconds of α-CROWN bisection per model (default 400, cifar10_net 1500)")
    parser.add_argument("--crown-budget", type=float, default=900.0,
                        help="seconds of CROWN bisection per model (default 900)")
    parser.add_argument("--onnxlip", default=None, help="onnxlip executable")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per onnxlip CLI call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write all results as JSON")
    args = parser.parse_args()
    if args.check_maxpool:
        set_torch_threads(args.threads)
        sys.exit(0 if check_maxpool() else 1)
    if not args.skip_onnxlip:
        args.onnxlip = args.onnxlip or shutil.which("onnxlip")
        if not args.onnxlip:
            parser.error("onnxlip CLI not found: pass --onnxlip (or --skip-onnxlip)")

    cache = load_cache(args.peers_json)
    results = [run_model(name, args, cache) for name in args.models]
    print("| model | onnxlip radius (method, s) | CROWN radius [< eps not proven] (s) "
          "| α-CROWN radius [< eps not proven] (s) | attack distance |")
    print("|---|---|---|---|---|")
    for res in results:
        print(row(res))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
