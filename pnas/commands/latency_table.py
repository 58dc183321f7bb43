"""`pnas latency-table --device NAME [--out FILE]`: measure a latency table on this machine.

The table (`shared.latency`) holds the batch-1 time of every piece of the search's networks
(every operator at every channel count and resolution, the projections, stem, head and the
cells' joining) for one network's settings, given as `pnas search` takes them (a preset, a
config file, flags); `cost_network = "final"` measures the final recipe's network instead.
A search reads it with ``--latency-table FILE`` (config: ``latency_table``), on any machine:
`--import FILE` checks a table made elsewhere and copies it to --out.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from shared.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("latency-table")
    def latency_table(
        device: str = typer.Option(None, "--device", help="A name for this device (the table's target), e.g. cpu-laptop or t4."),
        out: Path = typer.Option(None, "--out", "-o", help="Where to write the table (default: latency-DEVICE.json)."),
        import_: Path = typer.Option(None, "--import", help="Check a table made on another machine (and copy it to --out)."),
        preset: str = typer.Option(None, help="quick or paper: the network's settings, as pnas search takes them."),
        config: Path = typer.Option(None, "--config", "-c", help="The search's TOML or YAML file."),
        dataset: str = typer.Option(None, help="The dataset (its input shape and classes)."),
        ops: str = typer.Option(None, help="Comma-separated operators."),
        blocks: int = typer.Option(None, "--blocks", "-B", help="Up to how many blocks a cell has."),
        filters: int = typer.Option(None, "--filters", "-F"),
        n: int = typer.Option(None, "--n", "-N", help="Cells per stage."),
        cost_network: str = typer.Option(None, "--cost-network", help="search (default) or final (pnas final's F and N)."),
        repeats: int = typer.Option(30, "--repeats", help="Timed calls per piece (the median is kept)."),
        threads: int = typer.Option(0, "--threads", help="TensorFlow threads (0: its default, as a deployment runs)."),
        clock: str = typer.Option("wall", "--clock", help="wall (default) or cpu: this process's CPU time, for a machine other work shares."),
    ) -> None:
        """Measure a latency table of every piece of the search's networks on this machine (batch size 1)."""
        from shared.latency import load_table

        if import_ is not None:
            table = load_table(import_)
            if out is not None and Path(out).resolve() != Path(import_).resolve():
                shutil.copyfile(import_, out)
            print(f"{out or import_}: {table.describe()}")
            print(f"use it with: pnas search --latency-table {out or import_} --max-latency-ms MS")
            return
        if not device:
            raise UserError("give --device NAME (the name of the machine this runs on), or --import FILE")
        if clock not in ("wall", "cpu"):
            raise UserError(f"--clock must be wall or cpu, got {clock!r}")
        if repeats < 1:
            raise UserError(f"--repeats must be at least 1, got {repeats}")
        from shared.budget import cost_spec
        from shared.config import build_config, read_config_file

        file_data = read_config_file(config) if config else {}
        train = {k: v for k, v in dict(dataset=dataset, filters=filters, cells_per_stage=n).items() if v is not None}
        overrides = dict(ops=ops, blocks=blocks, cost_network=cost_network) | ({"train": train} if train else {})
        cfg, _ = build_config(preset=preset or (None if config else "quick"), file_data=file_data, overrides=overrides)
        from worker.datasets import dataset_spec

        spec = cost_spec(cfg, dataset_spec)
        from worker.latency import measure_table, set_threads

        if threads:
            set_threads(threads)
        path = out or Path(f"latency-{device}.json")

        def progress(done: int, total: int) -> None:
            if done == 1 or done == total or done % 20 == 0:
                print(f"measured {done} of {total} pieces", file=sys.stderr, flush=True)

        table = measure_table(spec, cfg.ops, cfg.blocks, device=device, repeats=repeats, clock=clock, progress=progress)
        table.save(path)
        print(f"{path}: {table.describe()}; batch size 1, {table.statistic}")
        print(f"use it with: pnas search --latency-table {path} --max-latency-ms MS (the same settings)")
