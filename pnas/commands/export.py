"""`pnas export RUN [--rank 1] --out DIR`: one ranked cell as files a person can take away.

- ``cell.json``: the cell (blocks as ``[I1, O1, I2, O2]``), its id, readable form, accuracy
  and the training settings used (also readable by `pnas model --cell cell.json`);
- ``model.keras``: the Keras network built from it with the run's training settings (input
  shape and classes from the dataset's spec: nothing is downloaded), untrained;
- ``cell.png``: a diagram of the cell (inputs, each block's two operators and the add, the
  concatenation).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pnas.render import cell_of, dumps, job_dict, open_store
from shared.errors import ChildFailed, UserError

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store


def ranked_child(store: Store, run: RunView, rank: int):
    """The search child at leaderboard position ``rank`` (1 = best); UserError if none."""
    if rank < 1:
        raise UserError(f"--rank must be at least 1, got {rank}")
    rows = store.top(run.id, k=rank)
    if len(rows) < rank:
        raise UserError(f"run {run.name!r} has {len(rows)} succeeded child(ren); there is no rank {rank}")
    return rows[rank - 1]


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        run: str = typer.Argument(..., help="Run name or id."),
        rank: int = typer.Option(1, "--rank", "-r", help="Leaderboard position (1 = best)."),
        out: Path = typer.Option(..., "--out", "-o", help="Directory for cell.json, model.keras and cell.png."),
        n: int = typer.Option(None, "--n", "-N", help="Cells per stage of the saved network (default: the run's)."),
        filters: int = typer.Option(None, "--filters", "-F", help="F of the saved network (default: the run's)."),
        as_json: bool = typer.Option(False, "--json", help="Describe the written files as JSON."),
    ) -> None:
        """Write a ranked cell as JSON, its Keras model file and a PNG diagram."""
        from shared.config import SearchConfig

        store = open_store()
        r = store.require_run(run)
        j = ranked_child(store, r, rank)
        train = SearchConfig.from_json(r.config).train
        train = train.model_copy(update={k: v for k, v in dict(cells_per_stage=n, filters=filters).items() if v is not None})
        if train.cells_per_stage < 1 or train.filters < 1:
            raise UserError("--n and --filters must be at least 1")
        cell = cell_of(j.cell)
        out.mkdir(parents=True, exist_ok=True)

        doc = {**job_dict(j, rank=rank), "run": r.name, "blocks": j.cell, "train": train.model_dump(mode="json")}
        (out / "cell.json").write_text(json.dumps(doc, indent=2) + "\n")

        import matplotlib

        matplotlib.use("Agg")
        from pnas.diagram import draw_cell

        title = f"run {r.name}, rank {rank}: {cell.arch_id}, accuracy {j.reward:.4f}\n{cell.readable()}"
        draw_cell(cell, title=title).savefig(out / "cell.png", metadata={"Title": f"cell {cell.arch_id}"})

        from worker.datasets import dataset_spec
        from worker.network import network_for

        shape, classes = dataset_spec(train.dataset)
        try:
            net = network_for(cell, train, input_shape=shape, num_classes=classes, name=f"pnas_{cell.arch_id}")
        except ChildFailed as exc:
            raise UserError(f"cannot build the network of job {j.id}: {exc}") from None
        net.save(out / "model.keras")
        files = {"cell": str(out / "cell.json"), "model": str(out / "model.keras"), "diagram": str(out / "cell.png")}
        from shared.budget import cell_costs

        _, flops, _ = cell_costs(j.cell, train, dataset_spec)
        summary = {"job": j.id, "rank": rank, "arch_id": cell.arch_id, "accuracy": j.reward, "params": int(net.count_params()),
                   "flops": flops,
                   "input_shape": list(shape), "classes": classes, "n": train.cells_per_stage, "filters": train.filters,
                   "files": files}  # fmt: skip
        if as_json:
            print(dumps(summary))
            return
        print(f"run {r.name!r} rank {rank}: job {j.id}, {cell.arch_id}, accuracy {j.reward:.4f}")
        print(f"  {cell.readable()}")
        for what, path in files.items():
            print(f"  wrote {path}")
        print(f"  network: N={train.cells_per_stage}, F={train.filters}, input {tuple(shape)}, {classes} classes, "
              f"{summary['params']:,} parameters, {flops:,} multiply-adds per image (untrained; load with worker.ops.DropPath as a custom object)",
              file=sys.stdout)  # fmt: skip
