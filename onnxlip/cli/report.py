"""Human (rich) and machine (JSON-ready dict) views of results. No computation here."""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from ..batch.accuracy import accuracy_table_rows
from ..bounds.perlayer.engine import BoundResult, LayerReport
from ..bounds.methods import Choice
from ..graph.nodes import parameter_count
from ..graph.network import Network
from ..robustness.radius import RadiusResult

SQRT2 = math.sqrt(2.0)
RADIUS_NOTE = "--estimate: radii rest on norms from Lanczos (converged estimates, not a proof); without it they are provable"
ESTIMATE_NOTE = ("--estimate: norms marked lanczos (and tight-mode bounds) come from Lanczos converged to a "
                 "relative tolerance (accurate, not a proof); without --estimate every bound is provable")
PROVABLE_NOTE = "provable: every radius rests on provable norms, rounding accounted for (--estimate: faster, not a proof)"


def _shape(shape: Sequence[int]) -> str:
    return "×".join(str(s) for s in shape)


def _finite(value: float | None) -> float | None:
    """JSON has no inf/NaN: map them to null."""
    return None if value is None or not math.isfinite(value) else value


# ---------------------------------------------------------------- JSON views

def network_dict(net: Network) -> dict[str, Any]:
    nodes = [{"index": i, "op": n.op, "detail": n.describe(), "in_shape": list(n.in_shape),
              "out_shape": list(n.out_shape), "params": parameter_count(n), "names": list(n.names)}
             for i, n in enumerate(net.nodes)]
    return {"model": net.source, "input": net.input_name, "input_shape": list(net.onnx_input_shape),
            "output": net.output_name, "output_shape": [1, *net.output_shape], "nodes": nodes,
            "warnings": list(net.warnings)}


def global_dict(result: BoundResult) -> dict[str, Any]:
    return {"bound": result.bound, "layers": [layer.as_dict() for layer in result.layers],
            "estimate": result.is_estimate, "seconds": result.seconds}


def ball_certified(eps: float, bound: float, margin: float) -> bool:
    """The paper's test on one ball: ε·L(x0, ε) < m/√2 keeps the label (m > 0)."""
    return margin > 0 and eps * bound < margin / SQRT2


def local_dict(results: list[BoundResult], method: str = "paper", margin: float | None = None,
               label: int | None = None, choices: Sequence[Choice] = ()) -> dict[str, Any]:
    data: dict[str, Any] = {
        "choices": [c.as_dict() for c in choices],
        "bounds": [{"eps": r.eps, "bound": r.bound, "estimate": r.is_estimate, "seconds": r.seconds,
                    **({"certified": ball_certified(r.eps, r.bound, margin)} if margin is not None else {})}
                   for r in results],
        "layers": [layer.as_dict() for layer in results[-1].layers],
        "method": method,
        "seconds": sum(r.seconds for r in results),
    }
    if margin is not None:
        data.update(label=label, margin=margin)
    return data


def radius_dict(result: RadiusResult) -> dict[str, Any]:
    return result.as_dict()


def running_max(values: Sequence[float]) -> list[float]:
    """Each value raised to the largest before it: a ratio reached inside the ball of radius ε
    is reached inside every larger ball too, so a lower bound at ε holds at every larger ε."""
    best, out = -math.inf, []
    for v in values:
        best = max(best, v)
        out.append(best)
    return out


def sweep_dict(results: list[BoundResult], global_value: float, method: str, lower: list[Any] | None,
               seconds: float, choices: Sequence[Choice] = ()) -> dict[str, Any]:
    """``lower``: the running maximum of the ratios found (``lower_found``: at that ε alone)."""
    points = []
    held = running_max([lb.value for lb in lower]) if lower is not None else []
    for i, r in enumerate(results):
        point = {"eps": r.eps, "bound": r.bound, "estimate": r.is_estimate, "seconds": r.seconds}
        if lower is not None:
            point.update(lower=held[i], lower_found=lower[i].value, lower_method=lower[i].method,
                         jacobian=lower[i].jacobian)
        points.append(point)
    return {"points": points, "global_bound": global_value, "method": method,
            "choices": [c.as_dict() for c in choices],
            "estimate": any(r.is_estimate for r in results), "seconds": seconds}


def choice_lines(choices: Sequence[Choice]) -> list[str]:
    """What ``best`` ran: one line per run of consecutive ε with the same choice, with the reason
    at its costliest ε."""
    groups: list[list[Choice]] = []
    for c in choices:
        if groups and groups[-1][-1].method == c.method:
            groups[-1].append(c)
        else:
            groups.append([c])
    lines = []
    for group in groups:
        where = f"eps={group[0].eps:g}" + (f"…{group[-1].eps:g}" if len(group) > 1 else "")
        ran = "secant and per-layer bounds, the smaller" if group[0].method == "tight" else "per-layer bound only"
        lines.append(f"method best at {where}: {ran} ({max(group, key=lambda c: c.work).reason})")
    return lines


def batch_dict(rows: list[dict[str, Any]], radii: Sequence[float], labelled: bool, seconds: float) -> dict[str, Any]:
    n = len(rows)
    return {"n": n, "labelled": labelled,
            "accuracy": sum(r["correct"] for r in rows) / n if n else 0.0,
            "table": accuracy_table_rows(rows, radii),
            "inputs": rows, "seconds": seconds}


def lower_dict(eps: float, lb: Any, seconds: float) -> dict[str, Any]:
    return {"eps": eps, "lower_bound": lb.value, "method": lb.method, "jacobian": lb.jacobian, "seconds": seconds}


def attack_dict(attack: Any, ort_label: int | None, seconds: float) -> dict[str, Any]:
    return {"found": attack.found, "distance": _finite(attack.distance), "method": attack.method,
            "label": attack.label, "adv_label": attack.adv_label,
            "onnxruntime_label": ort_label,
            "onnxruntime_agrees": None if not attack.found else ort_label == attack.adv_label,
            "seconds": seconds}


def check_dict(outcomes: list[Any], model: str, seconds: float) -> dict[str, Any]:
    return {"model": model, "passed": all(o.passed for o in outcomes),
            "conditions": [o.as_dict() for o in outcomes], "seconds": seconds}


# ---------------------------------------------------------------- rich views

def titled(title: str) -> Table:
    """A table at least as wide as its title, so the title never wraps mid-phrase."""
    return Table(title=title, box=box.SIMPLE_HEAD, min_width=len(title))


def network_table(net: Network) -> Table:
    table = titled(f"{net.source}: input '{net.input_name}' {list(net.onnx_input_shape)}")
    for col in ("#", "op", "in", "out", "params", "onnx nodes"):
        table.add_column(col, justify="right" if col in ("#", "params") else "left")
    for i, n in enumerate(net.nodes):
        table.add_row(str(i), n.describe(), _shape(n.in_shape), _shape(n.out_shape),
                      str(parameter_count(n)), ", ".join(n.names))
    return table


def layer_table(layers: list[LayerReport], title: str, local: bool) -> Table:
    """Per-layer table: op, output shape, L_k, ε_k (ball at the layer's input), unit counts."""
    table = titled(title)
    certified = any(layer.estimate is not None for layer in layers)
    columns = (["#", "op", "shape", "L_k"] + (["ε_k", "inactive", "active", "unstable"] if local else [])
               + ["norm"] + (["slack"] if certified else []))
    for col in columns:
        table.add_column(col, justify="left" if col in ("op", "shape", "norm") else "right",
                         no_wrap=col != "op")
    for layer in layers:
        row = [str(layer.index), layer.op, _shape(layer.out_shape), f"{layer.lipschitz:.6g}"]
        if local:
            row += [f"{layer.eps_in:.4g}", str(layer.inactive), str(layer.active), str(layer.unstable)]
        row.append(layer.method)
        if certified:  # what certification cost over the converged estimate of the same norm
            row.append(f"{layer.lipschitz / layer.estimate:.4f}" if layer.estimate else "")
        table.add_row(*row)
    return table


# Above this factor between a provable per-layer product and the Lanczos estimate of the same
# product, the output says so (large convolutions get FFT bounds of their unmasked operator).
PROOF_COST_NOTE = 1.5


def print_proof_cost(console: Console, layers: list[LayerReport]) -> None:
    """A note when provable layer norms cost much over their estimates (the ``slack`` column)."""
    cost = math.prod(layer.lipschitz / layer.estimate for layer in layers if layer.estimate)
    if cost > PROOF_COST_NOTE:
        console.print(f"[yellow]the provable product is {cost:.3g}× the Lanczos estimate of the same layers (layers too "
                      "large to factorize get FFT or l1-linf bounds, see the slack column); --estimate gives "
                      "the estimate, not a proof[/yellow]")


def print_bounds(console: Console, results: list[BoundResult], global_value: float | None = None,
                 margin: float | None = None, label: int | None = None) -> None:
    if results and results[-1].layers:
        console.print(layer_table(results[-1].layers, f"layers at eps={results[-1].eps:g}", local=True))
        print_proof_cost(console, results[-1].layers)
    for r in results:
        line = f"local Lipschitz bound  L(x0, eps={r.eps:g}) = [bold]{r.bound:.6g}[/bold]"
        if margin is not None:
            ok = ball_certified(r.eps, r.bound, margin)
            line += f"  eps·L = {r.eps * r.bound:.4g}: {'[green]certified[/green]' if ok else 'not certified'}"
        console.print(line + f"  ({r.seconds:.3f} s)")
    if global_value is not None:
        console.print(f"global Lipschitz bound = {global_value:.6g}")
    if margin is not None:
        console.print(f"label {label}, margin {margin:.6g}: a ball is certified when eps·L < margin/√2 = "
                      f"{margin / SQRT2:.6g}")
    if any(r.is_estimate for r in results):
        console.print(f"[dim]{ESTIMATE_NOTE}[/dim]")


def print_radius(console: Console, r: RadiusResult) -> None:
    console.print(f"label {r.label}, margin {r.margin:.6g}")
    console.print(f"certified L2 radius = [bold]{r.radius:.6g}[/bold]  (method: {r.method}, {r.seconds:.2f} s)")
    if r.method == "constant":
        console.print("  the global bound is 0: the output does not depend on the input, so no perturbation changes it")
    folded = "n/a" if r.radius_folded is None else f"{r.radius_folded:.6g}"
    parts = [f"paper-style {r.radius_paper:.6g}", f"margin folding {folded}"]
    parts.append(f"tight {'n/a' if r.radius_tight is None else f'{r.radius_tight:.6g}'}")
    console.print("  " + " | ".join(parts + [f"global {r.radius_global:.6g}"]))
    if r.choice is not None and r.choice["method"] == "paper":
        console.print(f"[dim]tight tests: {r.choice['reason']}[/dim]")
    if r.branch_seconds > 0:
        console.print(f"[dim]branch and bound: up to {r.branch_seconds:g} s per radius tested[/dim]")
    if r.certified:
        console.print(f"[dim]{PROVABLE_NOTE}[/dim]")
    else:
        console.print(f"[dim]{RADIUS_NOTE}[/dim]")


def sweep_table(data: dict[str, Any]) -> Table:
    lower = bool(data["points"]) and "lower" in data["points"][0]
    table = titled(f"local bound over eps (method {data['method']}), global bound {data['global_bound']:.6g}")
    for col in ["eps", "L(x0, eps)", "L / global"] + (["lower", "gap ×"] if lower else []):
        table.add_column(col, justify="right")
    for p in data["points"]:
        ratio = f"{p['bound'] / data['global_bound']:.3g}" if data["global_bound"] > 0 else "n/a"
        row = [f"{p['eps']:.4g}", f"{p['bound']:.6g}", ratio]
        if lower:
            row += [f"{p['lower']:.6g}", f"{p['bound'] / p['lower']:.3g}" if p["lower"] > 0 else "inf"]
        table.add_row(*row)
    return table


def accuracy_table(data: dict[str, Any]) -> Table:
    what = "certified accuracy" if data["labelled"] else "certified fraction (own predictions)"
    table = Table(title=f"{what} over {data['n']} inputs", box=box.SIMPLE_HEAD)
    for col in ("radius", "certified", what.split(" (")[0]):
        table.add_column(col, justify="right")
    for row in data["table"]:
        table.add_row(f"{row['radius']:g}", f"{row['certified']}/{data['n']}", f"{row['certified_accuracy']:.1%}")
    return table


def inputs_table(rows: list[dict[str, Any]], limit: int = 20) -> Table:
    table = Table(title="per input" + (f" (first {limit} of {len(rows)}; all with --csv)" if len(rows) > limit else ""),
                  box=box.SIMPLE_HEAD)
    for col in ("#", "label", "predicted", "margin", "radius", "method"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in rows[:limit]:
        table.add_row(str(row["index"]), str(row["label"]), str(row["predicted"]), f"{row['margin']:.4g}",
                      f"{row['radius']:.4g}", row["method"])
    return table


def check_table(outcomes: list[Any]) -> Table:
    table = titled("onnxlip check")
    for col in ("condition", "input", "measured", "threshold", "result"):
        table.add_column(col, justify="right" if col in ("measured", "threshold") else "left")
    for o in outcomes:
        result = "[green]PASS[/green]" if o.passed else "[bold red]FAIL[/bold red]"
        table.add_row(o.what, os.path.basename(o.input) if o.input else "-", f"{o.measured:.6g}", f"{o.relation} {o.threshold:g}", result)
    return table
