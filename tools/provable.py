"""Provable vs estimated certified radii on every classifier shipped in models/ and in the VNN-COMP
corpus: ``onnxlip certify MODEL --input X --json`` run twice per model, once for each mode, in the
same run (alternating, so the machine's load hits both alike).

By default the modes are the CLI's own: ``--estimate`` (Lanczos estimates of spectral norms) and
the default (every norm provable). Each row gives both radii, their ratio, both wall times and
their ratio, the method that proved the radius and whether the CLI reported ``"certified": true``.

    python tools/provable.py [--models mnist_lenet cifar10_net ...] [--json out.json] [--markdown]
    python tools/provable.py --from-json out.json --markdown
    python tools/provable.py --estimate-args=--estimate --certified-args=   # the defaults
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
SHIPPED = ["mnist_lenet", "cifar10_net", "mlp", "convnet", "batchnorm_net", "nhwc_tf", "normalized_conv",
           "normalized_mlp", "resnet_small", "shape_ops_net"]
CORPUS_CLASSIFIERS = ["mnistfc_256x4", "marabou_cifar10_medium", "oval21_cifar_deep_kw", "sri_resnet_b",
                      "cifar10_resnet_4b", "rl_lunarlander"]


def model_files(name: str) -> tuple[Path, Path]:
    """(ONNX file, nominal input): a shipped model's x0, or a corpus model's .vnnlib (its box centre)."""
    if name in SHIPPED:
        return ROOT / "models" / f"{name}.onnx", ROOT / "models" / f"{name}_x0.npy"
    return CORPUS / f"{name}.onnx", CORPUS / f"{name}.vnnlib"


def certify(cli: list[str], name: str, extra: list[str], timeout: float) -> dict:
    """One ``certify --json`` run: its JSON plus the wall time, or the error."""
    onnx, x0 = model_files(name)
    start = time.perf_counter()
    try:
        done = subprocess.run([*cli, "certify", str(onnx), "--input", str(x0), "--json", *extra],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s", "wall": timeout}
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1], "wall": wall}
    data = json.loads(done.stdout)
    return {"radius": data["radius"], "method": data["method"], "certified": data["certified"], "wall": wall}


def row_of(name: str, estimate: dict, proof: dict) -> dict:
    row = {"model": name, "estimate": estimate, "certified": proof}
    if "radius" in estimate and "radius" in proof:
        row["radius_ratio"] = proof["radius"] / estimate["radius"] if estimate["radius"] > 0 else float("nan")
        row["time_ratio"] = proof["wall"] / estimate["wall"]
    return row


def markdown(rows: list[dict]) -> str:
    def cell(run: dict) -> str:
        if "error" in run:
            return f"error: {run['error']}"
        flag = "" if run["certified"] else ", estimate"
        return f"{run['radius']:.4g} ({run['method']}{flag}) | {run['wall']:.1f}"

    lines = ["| model | estimate radius (method) | s | certified radius (method) | s | radius ratio | time ratio |",
             "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        ratios = (f"{r['radius_ratio']:.4f} | {r['time_ratio']:.2f}" if "radius_ratio" in r else "— | —")
        lines.append(f"| {r['model']} | {cell(r['estimate'])} | {cell(r['certified'])} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=SHIPPED + CORPUS_CLASSIFIERS)
    p.add_argument("--onnxlip", default="onnxlip", help="the CLI to run (default: onnxlip on PATH)")
    p.add_argument("--estimate-args", default="--estimate", help="certify options of the estimate mode")
    p.add_argument("--certified-args", default="", help="certify options of the provable mode")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per certify run")
    p.add_argument("--json", type=Path, help="write the rows here (rewritten after each model)")
    p.add_argument("--from-json", type=Path, help="print a saved run")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
    else:
        cli = shlex.split(args.onnxlip)
        rows = []
        for name in args.models:
            estimate = certify(cli, name, shlex.split(args.estimate_args), args.timeout)
            proof = certify(cli, name, shlex.split(args.certified_args), args.timeout)
            rows.append(row_of(name, estimate, proof))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print(markdown(rows) if args.markdown else json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
