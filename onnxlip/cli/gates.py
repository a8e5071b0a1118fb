"""Robustness gates for CI: conditions on bounds and radii, and their JUnit XML report.

Conditions (each one JUnit testcase):
- ``local_bound``: L(x0, ε) ≤ max_bound, per input;
- ``certified_radius``: certified L2 radius ≥ min_radius, per input (label = argmax at x0);
- ``global_bound``: global bound ≤ max_global_bound, once per model.
"""
from __future__ import annotations

import math
import os
import platform
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from .. import __version__
from ..bounds.domain import InputBox, InputRange
from ..bounds.perlayer.engine import global_bound
from .config import Thresholds
from ..errors import InputError
from ..bounds.methods import DEFAULT_CERTIFIED, DEFAULT_METHOD, local_bounds
from ..graph.network import Network
from ..inputs.nominal import Nominal
from ..robustness.radius import certified_radius


@dataclass(frozen=True)
class Outcome:
    """One evaluated condition: ``measured relation threshold``."""

    name: str  # local_bound | certified_radius | global_bound
    input: str | None
    measured: float
    threshold: float
    relation: str  # "<=" or ">="
    seconds: float
    what: str  # e.g. "L(x0, eps=0.01)"
    eps: float | None = None
    estimate: bool = False

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured <= self.threshold if self.relation == "<=" else self.measured >= self.threshold

    @property
    def title(self) -> str:
        where = f" [{os.path.basename(self.input)}]" if self.input else ""
        return f"{self.name}{where}: {self.what} {self.relation} {self.threshold:g}"

    @property
    def message(self) -> str:
        broken = ">" if self.relation == "<=" else "<"
        sign = self.relation if self.passed else broken
        return f"{self.what} = {self.measured:.6g} {sign} threshold {self.threshold:.6g}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input": self.input, "measured": self.measured, "threshold": self.threshold,
                "relation": self.relation, "passed": self.passed, "eps": self.eps, "estimate": self.estimate,
                "what": self.what, "seconds": self.seconds}


def radius_of(net: Network, x0: Any, label: int | None = None, method: str | None = None,
              certified: bool = DEFAULT_CERTIFIED, box: InputBox | None = None, branch_seconds: float = 0.0) -> Any:
    """``certified_radius`` by ``method`` (None: ``methods.DEFAULT_METHOD``, as everywhere)."""
    return certified_radius(net, x0, label, method=method or DEFAULT_METHOD, certified=certified, box=box,
                            branch_seconds=branch_seconds)


def plan(thresholds: Thresholds, inputs: Sequence[Nominal]) -> int:
    """How many conditions ``evaluate`` will compute (for a progress bar)."""
    per_input = (thresholds.max_bound is not None) + (thresholds.min_radius is not None)
    return per_input * len(inputs) + (thresholds.max_global_bound is not None)


def check_plan(thresholds: Thresholds, inputs: Sequence[Nominal]) -> None:
    """Refuse requests that cannot be evaluated (raised before any work is done)."""
    if thresholds.empty:
        raise InputError("nothing to check: give --max-bound (with --eps), --min-radius or --max-global-bound, "
                         "or thresholds in onnxlip.toml")
    if (thresholds.max_bound is not None or thresholds.min_radius is not None) and not inputs:
        raise InputError("--max-bound and --min-radius need an input: give --input or inputs in onnxlip.toml")
    if thresholds.max_bound is not None and thresholds.eps is None:
        plain = [n.source for n in inputs if n.eps is None]
        if plain:
            raise InputError(f"--max-bound needs --eps (or thresholds.eps) for the input {plain[0]}; "
                             "only .vnnlib inputs imply one")


def evaluate(net: Network, inputs: Sequence[Nominal], thresholds: Thresholds, method: str = "paper",
             tick: Callable[[], None] = lambda: None, certified: bool = DEFAULT_CERTIFIED, valid: InputRange | None = None,
             branch_seconds: float = 0.0) -> list[Outcome]:
    """Every requested condition, in order: global, then per input bound and radius; with
    ``certified``, every measured value is provable; ``valid``: the inputs bounds and radii
    cover (see ``domain``); ``branch_seconds``: branch and bound in the radius search."""
    check_plan(thresholds, inputs)
    outcomes: list[Outcome] = []
    if thresholds.max_global_bound is not None:
        g = global_bound(net, certified=certified)
        outcomes.append(Outcome("global_bound", None, g.bound, thresholds.max_global_bound, "<=", g.seconds,
                                "global bound", estimate=g.is_estimate))
        tick()
    for nominal in inputs:
        box = None if valid is None else valid.box(nominal.x0)
        if thresholds.max_bound is not None:
            eps = thresholds.eps if thresholds.eps is not None else nominal.eps
            assert eps is not None  # check_plan
            r = local_bounds(net, nominal.x0, [float(eps)], method, certified, box)[0]
            outcomes.append(Outcome("local_bound", nominal.source, r.bound, thresholds.max_bound, "<=", r.seconds,
                                    f"L(x0, eps={eps:g})", float(eps), r.is_estimate))
            tick()
        if thresholds.min_radius is not None:
            start = time.perf_counter()
            c = radius_of(net, nominal.x0, None, method, certified, box, branch_seconds)
            outcomes.append(Outcome("certified_radius", nominal.source, c.radius, thresholds.min_radius, ">=",
                                    time.perf_counter() - start, f"certified radius (label {c.label})",
                                    estimate=not c.certified))
            tick()
    return outcomes


def junit_xml(outcomes: Sequence[Outcome], model: str, seconds: float, error: str | None = None,
              properties: dict[str, str] | None = None) -> ET.ElementTree:
    """A JUnit XML report: one testcase per condition (``error``: one errored testcase instead)."""
    failures = sum(not o.passed for o in outcomes)
    tests = len(outcomes) + (error is not None)
    counts = {"tests": str(tests), "failures": str(failures), "errors": str(int(error is not None)),
              "skipped": "0", "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "onnxlip", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"onnxlip check {os.path.basename(model)}" if model else "onnxlip check", **counts,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "hostname": platform.node() or "localhost"})
    props = ET.SubElement(suite, "properties")
    for name, value in {"model": model, "onnxlip": __version__, **(properties or {})}.items():
        ET.SubElement(props, "property", {"name": name, "value": str(value)})
    classname = "onnxlip." + (os.path.splitext(os.path.basename(model))[0] if model else "check")
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": o.title, "time": f"{o.seconds:.3f}"})
        if not o.passed:
            failure = ET.SubElement(case, "failure", {"message": o.message, "type": "ThresholdNotMet"})
            failure.text = (f"{o.name}: measured {o.measured!r}, threshold {o.relation} {o.threshold!r}"
                            + (f", eps {o.eps!r}" if o.eps is not None else "")
                            + (f", input {o.input}" if o.input else "") + (" (estimate)" if o.estimate else ""))
        ET.SubElement(case, "system-out").text = o.message
    if error is not None:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": "onnxlip check", "time": "0"})
        ET.SubElement(case, "error", {"message": error, "type": "OnnxlipError"}).text = error
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_junit(path: str | os.PathLike, tree: ET.ElementTree) -> None:
    try:
        with open(path, "wb") as f:
            tree.write(f, encoding="utf-8", xml_declaration=True)
            f.write(b"\n")
    except OSError as exc:
        raise InputError(f"{os.fspath(path)}: cannot write the JUnit report ({exc.strerror})") from None
