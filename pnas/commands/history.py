"""`pnas history RUN --out FILE`: a ``train_history.csv`` in the original implementation's
format, for users coming from it.

One row per trained (succeeded) search child, in the order they finished, no header:
the reward, then per block ``I1, O1, I2, O2`` (the input index, then the operator name).
Inputs are the paper's indices: -2 = H[c-2], -1 = H[c-1], 0.. = earlier blocks of the
cell. The original's ``rank_architectures.py`` reads the file as it is.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import typer

from pnas.render import open_store


def rows(store, run) -> list[list]:
    out = []
    for j in store.trained_children(run.id):
        tokens: list = []
        for in1, op1, in2, op2 in j.cell:
            tokens += [in1, op1, in2, op2]
        out.append([repr(round(float(j.reward), 6)), *tokens])
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def history(
        run: str = typer.Argument(..., help="Run name or id."),
        out: Path = typer.Option(Path("train_history.csv"), "--out", "-o", help="CSV file to write ('-' = stdout)."),
    ) -> None:
        """Write train_history.csv (reward, then I1,O1,I2,O2 per block; no header)."""
        store = open_store()
        r = store.require_run(run)
        data = rows(store, r)
        if str(out) == "-":
            csv.writer(sys.stdout, lineterminator="\n").writerows(data)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows(data)
            print(f"wrote {out}: {len(data)} trained children of run {r.name!r}")
        if not data:
            print(f"run {r.name!r} has no succeeded child yet", file=sys.stderr)
            sys.exit(1)
