"""`pnas space`: how big the search space is, level by level."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from shared.space import SearchSpace, parse_ops


def register(app: typer.Typer) -> None:
    @app.command()
    def space(
        blocks: int = typer.Option(5, "--blocks", "-B", help="B: blocks per cell."),
        beam: int = typer.Option(256, "--beam", "-K", help="K: cells kept per level."),
        ops: str = typer.Option(None, "--ops", help="Comma-separated operators (default: the paper's 8)."),
        lookback: int = typer.Option(2, help="Previous cells a block may read: 2 = H[c-1] and H[c-2] (paper); 1 = H[c-1] only."),
        lookforward: int = typer.Option(None, help="A block may read the first N earlier blocks of its cell (default: all; 0 = none)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    ) -> None:
        """Print, per level b, the distinct new blocks, the candidates (as the paper counts them)
        and how many distinct networks they are (cells that differ only in block order are one)."""
        sp = SearchSpace(ops=parse_ops(ops), blocks=blocks, lookback=lookback, lookforward=lookforward)
        rows = sp.level_counts(beam)
        for r, distinct in zip(rows, sp.distinct_counts(beam)):
            r["distinct"] = distinct
        if as_json:
            print(json.dumps({"space": sp.to_dict(), "beam": beam, "levels": rows}))
            return
        t = Table(title=f"search space: {len(sp.ops)} operators, B={blocks}, K={beam}")
        for col in ("b", "new blocks", "candidates (paper)", "distinct networks", "children trained"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(str(r["b"]), f"{r['new_blocks']:,}", f"{r['candidates']:,}", f"{r['distinct']:,}", f"{r['trained']:,}")
        total = sum(r["trained"] for r in rows)
        Console().print(t)
        print(f"blocks read {sp.describe_inputs()}")
        print(f"distinct networks: counted on a beam of {beam} distinct networks drawn at random (seed 0) per level")
        print(f"{rows[0]['candidates']:,} one-block cells; {total:,} children trained in all")
