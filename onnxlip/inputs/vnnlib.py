"""VNN-LIB property files as nominal inputs: the input box gives x0 and a default ε.

A VNN-LIB file (the VNN-COMP property format, SMT-LIB syntax) declares the inputs
``X_0 … X_{n-1}`` and outputs ``Y_j`` and bounds every input with
``(assert (<= X_i v))`` / ``(assert (>= X_i v))``. onnxlip reads the box
lo ≤ X ≤ hi and uses

- x0 = (lo + hi)/2, the box centre, reshaped (C order) to the model's input shape;
- ε = ‖(hi − lo)/2‖₂, the L2 radius of the box: the smallest L2 ball around x0 that
  contains the whole box, so a bound on that ball holds on the box.

Bounds may also be written ``(<= v X_i)``, ``(< …)``, ``(= X_i v)``, grouped in ``(and …)``
or in an ``(or …)`` with a single branch. Several bounds on one input keep the tightest.
Assertions on outputs (``Y_j``) are ignored: onnxlip bounds how far the whole output can
move, not a particular output property; they are counted in ``ignored`` so callers can say so.
Anything else on the inputs (a disjunction of several boxes, ``X_0 <= X_1``, linear
constraints) is refused with the line it is on.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ..errors import InputError

_VAR = re.compile(r"^([XY])_(\d+)$")
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class Expr:
    """A parenthesized S-expression with the line it starts on."""

    items: tuple["Node", ...]
    line: int

    def __str__(self) -> str:
        return "(" + " ".join(str(i) for i in self.items) + ")"


Node = Union[Expr, str]


@dataclass(frozen=True, eq=False)
class VnnlibBox:
    """The input box of a VNN-LIB property (flat, X_0 … X_{n-1})."""

    lower: np.ndarray
    upper: np.ndarray
    outputs: int  # declared Y_j
    ignored: int  # assertions on outputs, not used
    source: str = "vnnlib"

    @property
    def centre(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    @property
    def half_widths(self) -> np.ndarray:
        return (self.upper - self.lower) / 2

    @property
    def radius(self) -> float:
        """‖half-widths‖₂: the L2 ball of this radius around the centre contains the box."""
        return float(np.linalg.norm(self.half_widths))

    def notes(self) -> list[str]:
        if not self.ignored:
            return []
        s = "s" if self.ignored != 1 else ""
        return [f"{self.source}: {self.ignored} output constraint{s} ignored "
                f"(onnxlip bounds the change of the whole output on the input box's L2 ball)"]


def _parse(text: str, where: str) -> list[Node]:
    """Top-level S-expressions of ``text`` (``;`` comments removed)."""
    stack: list[tuple[list[Node], int]] = [([], 0)]
    for lineno, line in enumerate(text.splitlines(), 1):
        for token in _TOKEN.findall(line.split(";", 1)[0]):
            if token == "(":
                stack.append(([], lineno))
            elif token == ")":
                if len(stack) == 1:
                    raise InputError(f"{where}:{lineno}: unbalanced ')'")
                items, start = stack.pop()
                stack[-1][0].append(Expr(tuple(items), start))
            else:
                stack[-1][0].append(token)
    if len(stack) != 1:
        raise InputError(f"{where}:{stack[-1][1]}: '(' is never closed")
    return stack[0][0]


def _number(node: Node) -> float | None:
    """A numeric literal: ``0.5``, ``-1e-3`` or SMT-LIB's ``(- 0.5)``; None otherwise."""
    if isinstance(node, Expr):
        if len(node.items) == 2 and node.items[0] == "-":
            inner = _number(node.items[1])
            return None if inner is None else -inner
        return None
    try:
        return float(node)
    except ValueError:
        return None


def _mentions(node: Node, kind: str) -> bool:
    if isinstance(node, Expr):
        return any(_mentions(i, kind) for i in node.items)
    m = _VAR.match(node)
    return bool(m and m.group(1) == kind)


class _Box:
    def __init__(self, where: str):
        self.where = where
        self.lower: dict[int, float] = {}
        self.upper: dict[int, float] = {}
        self.ignored = 0

    def bound(self, index: int, lo: float | None, hi: float | None) -> None:
        if lo is not None:
            self.lower[index] = max(lo, self.lower.get(index, -np.inf))
        if hi is not None:
            self.upper[index] = min(hi, self.upper.get(index, np.inf))

    def constraint(self, expr: Node, line: int) -> None:
        """Record the input bounds in one asserted expression."""
        if not _mentions(expr, "X"):
            if _mentions(expr, "Y"):
                self.ignored += 1
                return
            raise InputError(f"{self.where}:{line}: assertion on no declared variable: {expr}")
        if not isinstance(expr, Expr) or not expr.items:
            raise InputError(f"{self.where}:{line}: unsupported assertion: {expr}")
        head, args = expr.items[0], expr.items[1:]
        if head == "and":
            for a in args:
                self.constraint(a, a.line if isinstance(a, Expr) else line)
            return
        if head == "or":
            self._disjunction(args, line)
            return
        if head in ("<=", ">=", "<", ">", "=") and len(args) == 2:
            a, b = args
            var, value, var_left = None, None, True
            if isinstance(a, str) and _VAR.match(a):
                var, value = a, _number(b)
            elif isinstance(b, str) and _VAR.match(b):
                var, value, var_left = b, _number(a), False
            m = _VAR.match(var) if var else None
            if m and m.group(1) == "X" and value is not None:
                if not np.isfinite(value):
                    raise InputError(f"{self.where}:{line}: bound {value} on {var} is not finite")
                index = int(m.group(2))
                if head == "=":
                    self.bound(index, value, value)
                elif (head in ("<=", "<")) == var_left:  # X <= v or v >= X
                    self.bound(index, None, value)
                else:
                    self.bound(index, value, None)
                return
        raise InputError(f"{self.where}:{line}: only constant bounds on single inputs are supported, got {expr}")


    def _disjunction(self, args: list[Node], line: int) -> None:
        """Disjuncts that bound the inputs alike (differing in output constraints only, as in
        VNN-COMP's nn4sys properties) are one input box; different boxes are refused."""
        parts = []
        for arg in args:
            part = _Box(self.where)
            part.constraint(arg, arg.line if isinstance(arg, Expr) else line)
            parts.append(part)
        if any((p.lower, p.upper) != (parts[0].lower, parts[0].upper) for p in parts[1:]):
            raise InputError(f"{self.where}:{line}: a disjunction of {len(args)} different input boxes is not "
                             "supported (split the property into one file per box)")
        for index, lo in parts[0].lower.items():
            self.bound(index, lo, None)
        for index, hi in parts[0].upper.items():
            self.bound(index, None, hi)
        self.ignored += sum(p.ignored for p in parts)


def parse_vnnlib(text: str, where: str = "vnnlib") -> VnnlibBox:
    """The input box of a VNN-LIB property given as text (``where`` names it in errors)."""
    box = _Box(where)
    inputs: set[int] = set()
    outputs: set[int] = set()
    for node in _parse(text, where):
        if not isinstance(node, Expr) or not node.items:
            raise InputError(f"{where}: unexpected top-level '{node}'")
        head = node.items[0]
        if head == "declare-const":
            if len(node.items) != 3:
                raise InputError(f"{where}:{node.line}: malformed declaration {node}")
            name, sort = node.items[1], node.items[2]
            m = _VAR.match(name) if isinstance(name, str) else None
            if m is None:
                raise InputError(f"{where}:{node.line}: variable '{name}' is neither X_i nor Y_j")
            if sort != "Real":
                raise InputError(f"{where}:{node.line}: variable {name} has sort {sort}, expected Real")
            (inputs if m.group(1) == "X" else outputs).add(int(m.group(2)))
        elif head == "assert":
            if len(node.items) != 2:
                raise InputError(f"{where}:{node.line}: malformed assertion {node}")
            box.constraint(node.items[1], node.line)
        elif head in ("set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"):
            continue
        else:
            raise InputError(f"{where}:{node.line}: unsupported command '{head}'")
    return _finish(box, inputs, outputs, where)


def _finish(box: _Box, inputs: set[int], outputs: set[int], where: str) -> VnnlibBox:
    if not inputs:
        raise InputError(f"{where}: declares no inputs (declare-const X_0 Real)")
    n = max(inputs) + 1
    if len(inputs) != n:
        missing = sorted(set(range(n)) - inputs)
        raise InputError(f"{where}: inputs X_0 … X_{n - 1} are not all declared (missing {_some(missing)})")
    undeclared = sorted((set(box.lower) | set(box.upper)) - inputs)
    if undeclared:
        raise InputError(f"{where}: bounds on undeclared inputs {_some(undeclared)}")
    unbounded = [i for i in range(n) if i not in box.lower or i not in box.upper]
    if unbounded:
        raise InputError(f"{where}: {len(unbounded)} of {n} inputs lack a lower or upper bound "
                         f"({_some(unbounded)})")
    lo = np.array([box.lower[i] for i in range(n)], dtype=np.float64)
    hi = np.array([box.upper[i] for i in range(n)], dtype=np.float64)
    empty = np.flatnonzero(lo > hi)
    if empty.size:
        i = int(empty[0])
        raise InputError(f"{where}: empty box: X_{i} >= {lo[i]:g} and X_{i} <= {hi[i]:g}")
    return VnnlibBox(lo, hi, len(outputs), box.ignored, where)


def _some(indices: list[int], shown: int = 5) -> str:
    text = ", ".join(f"X_{i}" for i in indices[:shown])
    return text + (f" and {len(indices) - shown} more" if len(indices) > shown else "")


def read_vnnlib(path: str | os.PathLike) -> VnnlibBox:
    """The input box of a VNN-LIB file."""
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise InputError(f"{where}: no such property file")
    try:
        with open(where, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not a readable VNN-LIB text file ({type(exc).__name__})") from None
    return parse_vnnlib(text, where)


def box_input(box: VnnlibBox, input_shape: tuple[int, ...], name: str = "input") -> np.ndarray:
    """The box centre reshaped (C order) to the model's per-sample input shape."""
    size = int(np.prod(input_shape))
    if box.centre.size != size:
        raise InputError(f"{box.source}: declares {box.centre.size} inputs but the model input "
                         f"'{name}' of shape {[1, *input_shape]} has {size}")
    return box.centre.reshape(input_shape)


def is_vnnlib(path: Any) -> bool:
    return os.fspath(path).lower().endswith(".vnnlib")
