"""Branch and bound on mnist_lenet's margins: the measurement table and the soundness checks.

    python tools/bab_probe.py table [--radii 0.23 0.24 ...] [--seconds 60] [--domains 2000]
    python tools/bab_probe.py search --seconds 30
    python tools/bab_probe.py check --eps 0.24 [--model ...]

``table``: per radius, whether every margin row e_c − e_j is certified over the L2 ball (no
input box), the domains bounded and the wall time (single thread). ``search``: the largest
radius certified within a time budget per radius tested. ``check``: every domain's
bound against the margin at points of that domain (onnxruntime), from ball samples, points
toward the bound's worst case and PGD iterates on the margin, plus the pointwise check of each
domain's affine minorant.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxlip.bounds.relax import branching, domains  # noqa: E402
from onnxlip.bounds.relax import crown  # noqa: E402
from onnxlip.importer import load_model  # noqa: E402
from onnxlip.linalg.backend import single_blas_thread  # noqa: E402
from onnxlip.graph.network import Network  # noqa: E402
from onnxlip.bounds.relax.margins import margin_rows  # noqa: E402
from onnxlip.bounds.relax.backsub import back_substitute  # noqa: E402
from onnxlip.robustness.search import largest_certified  # noqa: E402
from onnxlip.importer.runtime import run_onnx  # noqa: E402
from onnxlip.bounds.tight.chain import build_secants  # noqa: E402

MODEL, X0 = ROOT / "models" / "mnist_lenet.onnx", ROOT / "models" / "mnist_lenet_x0.npy"
RADII = (0.23, 0.24, 0.25, 0.26, 0.27)


def certify(net: Network, x0: Any, eps: float, max_seconds: float, max_domains: int,
            record: list | None = None, use_beta: bool = True) -> branching.MarginResult:
    """``branching.certify_margins`` for the label's margin rows at ``eps`` on the ball's ranges
    (``tight.build_secants``, timed too)."""
    start = time.perf_counter()
    acts = net.activations(x0)
    y0 = acts[-1][0].reshape(-1)
    rows = margin_rows(y0, int(np.argmax(y0)), net.output_shape)
    base = build_secants(net, x0, eps, acts=acts).ranges
    spent = time.perf_counter() - start
    out = branching.certify_margins(net.graph, base, rows, x0, eps, max_seconds - spent, max_domains, use_beta, record)
    return dataclasses.replace(out, seconds=out.seconds + spent)


def search(net: Network, x0: Any, seconds: float, max_domains: int, lo: float = 0.2272, hi: float = 0.28,
           rel_tol: float = 0.005) -> float:
    """Largest radius certified within ``seconds`` per radius tested (log-bisection, as
    ``search.largest_certified``; ``lo`` is the current method's radius)."""
    def holds(eps: float) -> bool:
        out = certify(net, x0, eps, seconds, max_domains)
        print(f"  {eps:.4f}: {out.certified} ({out.domains} domains, {out.seconds:.1f} s)", flush=True)
        return out.certified

    return largest_certified(holds, lo, hi, rel_tol)


def in_domain(net: Network, xs: Any, signs: dict[int, Any]) -> Any:
    """Which points satisfy every split constraint s·z ≥ 0 of a domain."""
    acts = net.activations(xs)
    ok = np.ones(len(xs), dtype=bool)
    for k, s in signs.items():
        z = acts[net.graph.inputs[k][0]].reshape(len(xs), -1)
        s = s.reshape(-1)
        ok &= np.all((s[None] * z >= 0) | (s[None] == 0), axis=1)
    return ok


def minorant(net: Network, domain: domains.Domain, row: Any) -> tuple[Any, float]:
    """The domain's affine lower function of row·f on the domain: (Λ_in, c)."""
    relaxed = crown.relaxations(net.nodes, domain.ranges)
    lam, const, _, _ = back_substitute(net.graph, relaxed, row, domain.lines, magnitudes=False,
                                       shifts=domains.split_shifts(domain.signs, domain.betas))
    return lam.reshape(-1), float(const[0])


def pgd_points(net: Network, x0: Any, eps: float, row: Any, starts: int, steps: int, rng: Any) -> Any:
    """Every iterate of L2 PGD minimising row·f over the ball from random starts."""
    shape = x0.shape
    delta = rng.standard_normal((starts, *shape))
    delta *= (eps * rng.uniform(0.2, 1.0, starts) / np.linalg.norm(delta.reshape(starts, -1), axis=1)).reshape(
        -1, *([1] * len(shape)))
    out = []
    u = np.repeat(row.reshape(1, -1), starts, axis=0).reshape(starts, *net.output_shape)
    for _ in range(steps):
        xs = x0[None] + delta
        out.append(xs)
        g = net.vjp(net.activations(xs), u).reshape(starts, -1)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-30)
        delta = delta - (2.5 * eps / steps) * g.reshape(delta.shape)
        n = np.linalg.norm(delta.reshape(starts, -1), axis=1)
        delta *= np.minimum(1.0, eps / n).reshape(-1, *([1] * len(shape)))
    return np.concatenate(out)


def ort_rows(path: Path, net: Network, xs: Any, rows: Any) -> Any:
    """row·f(x) for every point and row, f run by onnxruntime (float32)."""
    ys = np.concatenate([run_onnx(str(path), xs[i : i + 256].astype(np.float32), net.output_name)
                         for i in range(0, len(xs), 256)]).astype(np.float64).reshape(len(xs), -1)
    return ys @ rows.reshape(len(rows), -1).T


def check(path: Path, net: Network, x0: Any, eps: float, record: list, samples: int = 400,
          seed: int = 0) -> dict[str, float]:
    """Smallest slack over all checks (negative = a violation, beyond float32 noise):
    'bound': f-margin − domain bound at domain points; 'minorant': f-margin − affine minorant."""
    rng = np.random.default_rng(seed)
    y0 = net.activations(x0)[-1][0].reshape(-1)
    rows = margin_rows(y0, int(np.argmax(y0)), net.output_shape)
    by_row: dict[int, Any] = {}
    for r in sorted({r for r, _ in record}):
        pgd = pgd_points(net, x0, eps, rows[r], 8, 40, rng)
        by_row[r] = np.concatenate([pgd, _ball(x0, eps, samples, rng)])
    worst = dict(bound=np.inf, minorant=np.inf, points=0)
    for r, domain in record:
        lam, c = minorant(net, domain, rows[r : r + 1])
        unit = (lam / np.linalg.norm(lam)).reshape(1, -1)
        toward = (x0.reshape(1, -1) - eps * np.linspace(0.3, 1.0, 8)[:, None] * unit).reshape(-1, *x0.shape)
        xs = np.concatenate([by_row[r], toward, toward + 0.01 * eps * rng.standard_normal(toward.shape)])
        xs = _into_ball(x0, eps, xs)
        xs = xs[in_domain(net, xs, domain.signs)]
        if not len(xs):
            continue
        values = ort_rows(path, net, xs, rows[r : r + 1])[:, 0]
        worst["bound"] = min(worst["bound"], float(np.min(values - domain.bound)))
        worst["minorant"] = min(worst["minorant"], float(np.min(values - (xs.reshape(len(xs), -1) @ lam + c))))
        worst["points"] += len(xs)
    return worst


def _ball(x0: Any, eps: float, n: int, rng: Any) -> Any:
    d = rng.standard_normal((n, *x0.shape))
    r = eps * np.where(np.arange(n) % 2 == 0, 1.0, rng.uniform(0, 1, n))
    return x0[None] + d * (r / np.linalg.norm(d.reshape(n, -1), axis=1)).reshape(-1, *([1] * x0.ndim))


def _into_ball(x0: Any, eps: float, xs: Any) -> Any:
    d = xs - x0[None]
    n = np.linalg.norm(d.reshape(len(xs), -1), axis=1)
    return x0[None] + d * np.minimum(1.0, eps * (1 - 1e-9) / np.maximum(n, 1e-300)).reshape(-1, *([1] * x0.ndim))


@single_blas_thread
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("table", "search", "check"))
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--x0", type=Path, default=X0)
    p.add_argument("--radii", type=float, nargs="*", default=RADII)
    p.add_argument("--eps", type=float, default=0.24)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--domains", type=int, default=5000)
    p.add_argument("--no-beta", action="store_true")
    args = p.parse_args()
    net = load_model(str(args.model))
    x0 = np.load(args.x0)[0].astype(np.float64)
    if args.mode == "table":
        print(f"{'radius':>7} {'certified':>9} {'domains':>8} {'seconds':>8} {'root worst':>10} {'open worst':>10}")
        for eps in args.radii:
            out = certify(net, x0, eps, args.seconds, args.domains, use_beta=not args.no_beta)
            print(f"{eps:7.4f} {str(out.certified):>9} {out.domains:8d} {out.seconds:8.1f} "
                  f"{out.root_worst:10.3f} {out.open_worst:10.3f}", flush=True)
        return
    if args.mode == "search":
        print(f"budget {args.seconds:g} s per radius: largest certified {search(net, x0, args.seconds, args.domains):.4f}")
        return
    record: list = []
    out = certify(net, x0, args.eps, args.seconds, args.domains, record, use_beta=not args.no_beta)
    print(out)
    print(check(args.model, net, x0, args.eps, record))


if __name__ == "__main__":
    main()
