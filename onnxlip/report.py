"""Human (rich) and machine (JSON-ready dict) views of results. No computation here."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .bounds import BoundResult, LayerReport
from .ir import describe, parameter_count
from .network import Network
from .radius import RadiusResult

ESTIMATE_NOTE = ("estimate: some layer norms come from Lanczos converged to 1e-9 (values from below); "
                 "use --certified for provable upper bounds")


def network_dict(net: Network) -> dict[str, Any]:
    nodes = [{"index": i, "op": n.op, "detail": describe(n), "in_shape": list(n.in_shape),
              "out_shape": list(n.out_shape), "params": parameter_count(n), "names": list(n.names)}
             for i, n in enumerate(net.nodes)]
    return {"model": net.source, "input": net.input_name, "input_shape": [1, *net.input_shape],
            "output": net.output_name, "output_shape": [1, *net.output_shape], "nodes": nodes,
            "warnings": list(net.warnings)}


def global_dict(result: BoundResult) -> dict[str, Any]:
    return {"bound": result.bound, "layers": [layer.as_dict() for layer in result.layers],
            "estimate": result.is_estimate, "seconds": result.seconds}


def local_dict(results: list[BoundResult]) -> dict[str, Any]:
    return {
        "bounds": [{"eps": r.eps, "bound": r.bound, "estimate": r.is_estimate, "seconds": r.seconds} for r in results],
        "layers": [layer.as_dict() for layer in results[-1].layers],
        "seconds": sum(r.seconds for r in results),
    }


def radius_dict(result: RadiusResult) -> dict[str, Any]:
    return result.as_dict()


def network_table(net: Network) -> Table:
    table = Table(title=f"{net.source}: input '{net.input_name}' {[1, *net.input_shape]}")
    for col in ("#", "op", "in", "out", "params", "onnx nodes"):
        table.add_column(col)
    for i, n in enumerate(net.nodes):
        table.add_row(str(i), describe(n), str(list(n.in_shape)), str(list(n.out_shape)),
                      str(parameter_count(n)), ", ".join(n.names))
    return table


def layer_table(layers: list[LayerReport], title: str, local: bool) -> Table:
    table = Table(title=title)
    columns = ["#", "op", "out", "L_k", "how"] + (["eps_in", "inactive", "active", "unstable"] if local else [])
    for col in columns:
        table.add_column(col, justify="right" if col not in ("op", "how") else "left")
    for layer in layers:
        row = [str(layer.index), layer.op, str(list(layer.out_shape)), f"{layer.lipschitz:.6g}", layer.method]
        if local:
            row += [f"{layer.eps_in:.4g}", str(layer.inactive), str(layer.active), str(layer.unstable)]
        table.add_row(*row)
    return table


def print_bounds(console: Console, results: list[BoundResult], global_value: float | None = None) -> None:
    if results and results[-1].layers:
        console.print(layer_table(results[-1].layers, f"layers at eps={results[-1].eps:g}", local=True))
    for r in results:
        console.print(f"local Lipschitz bound  L(x0, eps={r.eps:g}) = [bold]{r.bound:.6g}[/bold]  ({r.seconds:.3f} s)")
    if global_value is not None:
        console.print(f"global Lipschitz bound = {global_value:.6g}")
    if any(r.is_estimate for r in results):
        console.print(f"[dim]{ESTIMATE_NOTE}[/dim]")


def print_radius(console: Console, r: RadiusResult) -> None:
    console.print(f"label {r.label}, margin {r.margin:.6g}")
    console.print(f"certified L2 radius = [bold]{r.radius:.6g}[/bold]  (method: {r.method}, {r.seconds:.2f} s)")
    folded = "n/a" if r.radius_folded is None else f"{r.radius_folded:.6g}"
    console.print(f"  paper-style {r.radius_paper:.6g} | margin folding {folded} | global {r.radius_global:.6g}")
