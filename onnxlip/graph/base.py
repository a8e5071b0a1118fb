"""What every IR node shares: the flag engines read instead of asking for its type, and a
short ``repr`` (the generated one would print every weight array)."""
from __future__ import annotations

Shape = tuple[int, ...]


class NodeBase:
    merge = False  # True for nodes that read several tensors (Add, Concat)

    def __repr__(self) -> str:
        from .summary import node_summary  # summary names the op with ``nodes.describe``
        return node_summary(self)
