"""Certified accuracy over a test set: the share of inputs classified correctly whose certified
radius reaches r, at each r of a table."""
from __future__ import annotations

from typing import Any, Sequence


def accuracy_table_rows(rows: list[dict[str, Any]], radii: Sequence[float]) -> list[dict[str, Any]]:
    """Certified accuracy at each radius r: correct and certified radius ≥ r."""
    n = max(len(rows), 1)
    table = []
    for r in radii:
        count = sum(1 for row in rows if row["correct"] and row["radius"] >= r)
        table.append({"radius": r, "certified": count, "certified_accuracy": count / n})
    return table
