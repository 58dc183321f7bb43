"""`pnas plot RUN --out DIR [--compare RUN] [--json]`: PNG figures of a run.

accuracy_per_level.png, predicted_vs_measured.png (one panel per level, with its Spearman),
best_so_far.png and, when a run with another strategy exists on the same dataset (or
``--compare`` names one), comparison.png, titled with both strategies (PNAS vs regularized
evolution, PNAS vs random search...).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pnas.render import dumps, open_store


def register(app: typer.Typer) -> None:
    @app.command()
    def plot(
        run: str = typer.Argument(..., help="Run name or id."),
        out: Path = typer.Option(..., "--out", "-o", help="Directory for the PNG files (created if missing)."),
        compare: str = typer.Option(None, "--compare", help="The run to compare with (default: the latest run with another strategy on the same dataset)."),
        as_json: bool = typer.Option(False, "--json", help="List the files as JSON."),
    ) -> None:
        """PNGs: accuracy per level, predicted vs measured, best so far, one strategy against another."""
        import matplotlib

        matplotlib.use("Agg")
        from pnas.plots import write_plots

        store = open_store()
        r = store.require_run(run)
        other = store.require_run(compare) if compare else None
        files, skipped = write_plots(store, r, out, compare=other)
        if as_json:
            print(dumps({"files": [{"name": f.name, "path": str(f.path), "panels": f.panels, "width": f.width,
                                    "height": f.height} for f in files], "skipped": skipped}))  # fmt: skip
        else:
            for f in files:
                print(f"wrote {f.path} ({f.panels} panel{'s' if f.panels > 1 else ''}, {f.width}x{f.height})")
            for s in skipped:
                print(f"skipped {s}", file=sys.stderr)
        if not files:
            sys.exit(1)
