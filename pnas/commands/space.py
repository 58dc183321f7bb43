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
        max_params: int = typer.Option(None, "--max-params", help="Also count the networks with at most this many parameters."),
        max_flops: int = typer.Option(None, "--max-flops", help="Also count the networks with at most this many multiply-adds per image."),
        max_latency_ms: float = typer.Option(None, "--max-latency-ms", help="Also count the networks predicted to run within this many ms (needs --latency-table)."),
        latency_table: str = typer.Option(None, "--latency-table", help="A `pnas latency-table` file (the same dataset, F, N and operators)."),
        dataset: str = typer.Option("cifar10", help="The input shape and classes the budget's network has."),
        filters: int = typer.Option(24, "--filters", "-F", help="F of the budget's network."),
        n: int = typer.Option(2, "--n", "-N", help="N (cells per stage) of the budget's network."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    ) -> None:
        """Print, per level b, the distinct new blocks, the candidates (as the paper counts them)
        and how many distinct networks they are (cells that differ only in block order are one)."""
        sp = SearchSpace(ops=parse_ops(ops), blocks=blocks, lookback=lookback, lookforward=lookforward)
        rows = sp.level_counts(beam)
        for r, distinct in zip(rows, sp.distinct_counts(beam)):
            r["distinct"] = distinct
        budget = None
        if (max_params, max_flops, max_latency_ms) != (None, None, None):
            budget = _budget(sp, beam, dict(max_params=max_params, max_flops=max_flops, max_latency_ms=max_latency_ms,
                                            latency_table=latency_table), dataset=dataset, filters=filters, n=n)
            for r, fits in zip(rows, budget["fits"]):
                r["within_budget"] = fits
        if as_json:
            print(json.dumps({"space": sp.to_dict(), "beam": beam, "levels": rows}
                             | ({"budget": budget["text"]} if budget else {})))
            return
        t = Table(title=f"search space: {len(sp.ops)} operators, B={blocks}, K={beam}")
        for col in ("b", "new blocks", "candidates (paper)", "distinct networks", "children trained") + (
            ("within budget",) if budget else ()
        ):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(str(r["b"]), f"{r['new_blocks']:,}", f"{r['candidates']:,}", f"{r['distinct']:,}", f"{r['trained']:,}",
                      *([f"{r['within_budget']:,}"] if budget else []))
        total = sum(r["trained"] for r in rows)
        Console().print(t)
        print(f"blocks read {sp.describe_inputs()}")
        print(f"distinct networks: counted on a beam of {beam} distinct networks drawn at random (seed 0) per level")
        print(f"{rows[0]['candidates']:,} one-block cells; {total:,} children trained in all")
        if budget:
            print(f"within budget: distinct networks that fit {budget['text']}, on a beam drawn from those that fit")


def _budget(sp: SearchSpace, beam: int, budgets: dict, *, dataset: str, filters: int, n: int) -> dict:
    """Per level, the distinct networks within the budget (the network of ``dataset``, F, N)."""
    from shared.budget import cost_spec, describe_budget, fitting_counts
    from shared.config import build_config
    from worker.datasets import dataset_spec

    train = dict(dataset=dataset, filters=filters, cells_per_stage=n)
    cfg, _ = build_config(overrides=dict(ops=sp.ops, blocks=sp.blocks, **budgets, train=train))
    spec = cost_spec(cfg, dataset_spec)
    text = describe_budget(cfg) + f", {dataset} F={filters} N={n}"
    return {"fits": fitting_counts(sp, beam, spec, cfg), "text": text}
