"""Max-pools rewritten exactly as ReLU trees, for the linear-relaxation engine.

max(a, b) = b + ReLU(a − b), so a window's max is a tree of pairwise maxes: its taps are paired,
each pair's difference goes through a ReLU, and the halves are paired again until one value is
left (an odd value out rides along with a difference of 0). Every level is a grouped convolution
of the level below (the first one a k×k one-hot convolution of the pool's input, the next ones
1×1), a ReLU and an ``Add``: node kinds the relaxation engine already handles. Relaxed that way
each difference gets its own range (by back-substitution, like any ReLU input) and its own
optimisable lower line, which is far tighter than relaxing the window's max in one step
(``maxpool.PoolLines``): the differences of neighbouring activations are much narrower than the
activations.

A padded tap of a max-pool holds −∞ and never wins, while a convolution pads with 0: the rewrite
is exact only when no window reaches into padding, or when the pool's input cannot be negative
(it is a ReLU's output), where a 0 never beats a real tap. Other pools keep their one-step lines.

``relaxation_graph`` maps a graph to its rewrite; node k of the original computes the same tensor
as node ``node_of[k]`` of the rewrite.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..linalg.windows import Window2d
from .dag import Graph
from .merge import Add
from .nodes import Conv, MaxPool, Node
from .relu import Relu


@dataclass(frozen=True, eq=False)
class Expansion:
    """The rewritten graph and, per original node, the rewrite's node computing its output."""

    graph: Graph
    node_of: tuple[int, ...]

    def tensor(self, t: int) -> int:
        """The rewrite's tensor holding original tensor ``t``."""
        return 0 if t == 0 else self.node_of[t - 1] + 1

    def inner(self, k: int) -> range:
        """The rewrite's nodes standing for original node k (one, or a pool's whole tree)."""
        return range(self.node_of[k - 1] + 1 if k else 0, self.node_of[k] + 1)

    @property
    def identity(self) -> bool:
        return len(self.graph.nodes) == len(self.node_of)


def _fully_inside(win: Window2d) -> bool:
    """Whether every window lies inside the unpadded input."""
    if any(win.pads):
        return False
    return all((win.out_hw[a] - 1) * win.strides[a] + win.dilations[a] * (win.kernel[a] - 1) + 1 <= win.in_hw[a]
               for a in range(2))


def expandable(g: Graph, k: int) -> bool:
    """Whether max-pool node k can be rewritten exactly (see the module docstring)."""
    node, tensor = g.nodes[k], g.inputs[k][0]
    if not isinstance(node, MaxPool) or node.window.kernel[0] * node.window.kernel[1] == 1:
        return False  # a 1×1 window is its own max
    return _fully_inside(node.window) or (tensor > 0 and isinstance(g.nodes[tensor - 1], Relu))


def _level(count: int) -> tuple[np.ndarray, np.ndarray]:
    """(difference, kept) selections, (⌈count/2⌉, count): value i of the next level is
    kept_i + ReLU(difference_i) = max of pair i (an odd last value: itself + ReLU(0))."""
    half = (count + 1) // 2
    diff, kept = np.zeros((half, count)), np.zeros((half, count))
    for i in range(count // 2):
        diff[i, 2 * i], diff[i, 2 * i + 1], kept[i, 2 * i + 1] = 1.0, -1.0, 1.0
    if count % 2:
        kept[half - 1, count - 1] = 1.0
    return diff, kept


def _tree(pool: MaxPool, source: int, base: int) -> tuple[list[Node], list[tuple[int, ...]]]:
    """The tree's nodes and the tensors they read, for a tree reading the pool's input from
    tensor ``source`` whose first node will be node ``base`` (its output tensor base + 1)."""
    channels, (kh, kw) = pool.in_shape[0], pool.window.kernel
    hw = pool.window.out_hw
    nodes: list[Node] = []
    wiring: list[tuple[int, ...]] = []
    count, window, reads, in_shape = kh * kw, pool.window, source, pool.in_shape
    while count > 1:
        diff, kept = _level(count)
        half = len(diff)
        shape = (channels * half, *hw)
        spatial = (1, kh, kw) if window is pool.window else (count, 1, 1)
        for weights in (diff, kept):
            kernel = np.tile(weights.reshape(half, *spatial), (channels, 1, 1, 1))
            nodes.append(Conv(kernel, np.zeros((shape[0], 1, 1)), window, channels, in_shape, shape, pool.names))
            wiring.append((reads,))
        difference = base + len(nodes) - 1  # the kept values' tensor is the next one
        nodes += [Relu(shape, shape, pool.names), Add(shape, shape, pool.names)]
        wiring += [(difference,), (difference + 1, difference + 2)]
        count, reads, in_shape = half, base + len(nodes), shape
        window = Window2d((1, 1), (1, 1), (1, 1), (0, 0, 0, 0), hw, hw)
    return nodes, wiring


@functools.lru_cache(maxsize=16)
def relaxation_graph(g: Graph) -> Expansion:
    """``g`` with every max-pool that ``expandable`` allows rewritten as its ReLU tree."""
    nodes: list[Node] = []
    wiring: list[tuple[int, ...]] = []
    node_of: list[int] = []
    for k, node in enumerate(g.nodes):
        reads = tuple(0 if t == 0 else node_of[t - 1] + 1 for t in g.inputs[k])
        if expandable(g, k):
            tree, inner = _tree(node, reads[0], len(nodes))
            nodes += tree
            wiring += inner
        else:
            nodes.append(node)
            wiring.append(reads)
        node_of.append(len(nodes) - 1)
    if len(nodes) == len(g.nodes):
        return Expansion(g, tuple(node_of))
    return Expansion(Graph(tuple(nodes), tuple(wiring), g.input_shape), tuple(node_of))


def winners(tree: Expansion, k: int, pool: MaxPool, relaxed: dict[int, tuple[np.ndarray, np.ndarray]]) -> list | None:
    """Per kernel tap, (1, C, Ho, Wo) bools: whether the tap can be its window's max, given the
    ranges (``relaxed``, keyed by the rewrite's nodes) of max-pool node k's tree. A difference
    a − b whose lower bound is > 0 means b's whole subtree never wins, an upper bound < 0 the
    same for a's (a tie keeps both). None when node k has no tree."""
    inner = tree.inner(k)
    if len(inner) == 1:
        return None
    channels, (ho, wo) = pool.in_shape[0], pool.window.out_hw
    taps = pool.window.kernel[0] * pool.window.kernel[1]
    alive = np.ones((1, channels, ho, wo, taps), dtype=bool)
    span = 1  # taps under one value of the level below
    for j in (j for j in inner if tree.graph.nodes[j].nonlinear):
        lo, hi = (r.reshape(1, channels, -1, ho, wo) for r in relaxed[j])
        for i in range(lo.shape[2]):
            first, second = slice(2 * i * span, (2 * i + 1) * span), slice((2 * i + 1) * span, (2 * i + 2) * span)
            alive[..., second] &= ~(lo[:, :, i] > 0)[..., None]
            alive[..., first] &= ~(hi[:, :, i] < 0)[..., None]
        span *= 2
    return [alive[..., t] for t in range(taps)]
