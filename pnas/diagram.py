"""A PNG diagram of one cell, drawn with matplotlib (no graphviz needed).

Left: the cell's inputs H[c-2] and H[c-1]. One row per block: its two operator boxes, each
fed by its input (an arrow from H[c-2], H[c-1] or an earlier block's sum), and the "+" that
adds them. Right: the concatenation of every block's output, which is the cell's output.
"""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from shared.space import PREV1, PREV2, Cell

_X_IN, _X_OP, _X_ADD, _X_OUT = 0.0, 2.6, 4.3, 6.0
_ROW = 1.6  # vertical distance between blocks
_COLOURS = {"sep": "#cfe2f3", "conv": "#cfe2f3", "dil": "#cfe2f3", "max": "#f9e0b0", "avg": "#f9e0b0", "identity": "#e0e0e0"}


def _colour(op: str) -> str:
    return next((c for prefix, c in _COLOURS.items() if op.startswith(prefix)), "#d9ead3")


def draw_cell(cell: Cell, *, title: str = "") -> Figure:
    """The figure (one axes) for ``cell``; the caller saves it."""
    n = cell.num_blocks
    height = max(3.0, 1.1 * n + 1.2)
    fig = Figure(figsize=(8.0, height), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    top = (n - 1) * _ROW / 2
    block_y = [top - k * _ROW for k in range(n)]
    inputs = {PREV2: (_X_IN, top / 2 + 0.9 if n > 1 else 0.8), PREV1: (_X_IN, -top / 2 - 0.9 if n > 1 else -0.8)}
    sums: dict[int, tuple[float, float]] = {}

    def box(x: float, y: float, label: str, colour: str, width: float = 1.5) -> None:
        ax.add_patch(FancyBboxPatch((x - width / 2, y - 0.25), width, 0.5, boxstyle="round,pad=0.05",
                                    fc=colour, ec="#333333", lw=1.0))  # fmt: skip
        ax.text(x, y, label, ha="center", va="center", fontsize=9)

    def arrow(a: tuple[float, float], b: tuple[float, float], *, bend: float = 0.0, colour: str = "#555555") -> None:
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=0.9, color=colour,
                                     connectionstyle=f"arc3,rad={bend}", shrinkA=4, shrinkB=4))  # fmt: skip

    box(*inputs[PREV2], "H[c-2]", "#ffffff", width=1.2)
    box(*inputs[PREV1], "H[c-1]", "#ffffff", width=1.2)
    for k, (blk, y) in enumerate(zip(cell.blocks, block_y)):
        ops_y = (y + 0.35, y - 0.35)
        for (inp, op), oy in zip(((blk.in1, blk.op1), (blk.in2, blk.op2)), ops_y):
            box(_X_OP, oy, op, _colour(op))
            if inp in inputs:
                src = (inputs[inp][0] + 0.6, inputs[inp][1])
                arrow(src, (_X_OP - 0.8, oy))
            else:  # an earlier block's sum: loop back from its "+" to this operator
                sx, sy = sums[inp]
                arrow((sx - 0.2, sy - 0.1), (_X_OP - 0.8, oy), bend=0.6, colour="#aa3333")
            arrow((_X_OP + 0.8, oy), (_X_ADD - 0.2, y))
        ax.add_patch(Circle((_X_ADD, y), 0.2, fc="#ffffff", ec="#333333", lw=1.0))
        ax.text(_X_ADD, y, "+", ha="center", va="center", fontsize=11)
        ax.text(_X_ADD, y + 0.3, f"b{k + 1}", ha="center", va="bottom", fontsize=8, color="#666666")
        sums[k] = (_X_ADD, y)
        arrow((_X_ADD + 0.2, y), (_X_OUT - 0.6, 0.0))
    box(_X_OUT, 0.0, "concat", "#ead1dc", width=1.1)
    ax.set_xlim(-0.9, _X_OUT + 0.8)
    span = max(top + 1.3, abs(inputs[PREV2][1]) + 0.6)
    ax.set_ylim(-span, span)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    return fig
