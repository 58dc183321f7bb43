"""`pnas model`: build the child network for a cell and print its summary or its size."""

from __future__ import annotations

import json

import typer

from pnas.commands._cells import CELL_HELP, parse_cell_arg
from shared.errors import ChildFailed, UserError


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"32,32,3"`` -> (32, 32, 3)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input-shape must be H,W,C with positive integers, e.g. 32,32,3; got {text!r}")
    return shape


def resolve_input(dataset: str | None, input_shape: str | None, classes: int | None):
    """(input shape, classes) from --dataset or from --input-shape/--classes."""
    from worker.datasets import dataset_spec

    if dataset and (input_shape or classes):
        raise UserError("give either --dataset or --input-shape/--classes, not both")
    if input_shape or classes:
        if not (input_shape and classes):
            raise UserError("--input-shape and --classes go together")
        if classes < 2:
            raise UserError(f"--classes must be >= 2, got {classes}")
        return parse_shape(input_shape), classes
    return dataset_spec(dataset or "cifar10")


def register(app: typer.Typer) -> None:
    @app.command()
    def model(
        cell: str = typer.Option(..., "--cell", help=CELL_HELP),
        dataset: str = typer.Option(None, "--dataset", help="Take input shape and classes from a dataset (nothing is downloaded). Default: cifar10."),
        input_shape: str = typer.Option(None, "--input-shape", help="H,W,C, e.g. 224,224,3."),
        classes: int = typer.Option(None, "--classes", help="Number of classes (with --input-shape)."),
        stem: str = typer.Option("cifar", "--stem", help="cifar (3x3 conv) or imagenet (stride-2 conv + two stem cells)."),
        n: int = typer.Option(2, "--n", "-N", help="N: cells per stage (3N cells in all)."),
        filters: int = typer.Option(24, "--filters", "-F", help="F: filters per block in the first stage."),
        stem_multiplier: float = typer.Option(None, "--stem-multiplier", help="Stem width factor (default: cifar 3, imagenet 1; PNASNet-5 large uses 3)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the summary."),
    ) -> None:
        """Build the network for CELL and print its layers and parameter count."""
        c = parse_cell_arg(cell)
        if stem not in ("cifar", "imagenet"):
            raise UserError(f"--stem must be cifar or imagenet, got {stem!r}")
        if n < 1 or filters < 1:
            raise UserError("--n and --filters must be >= 1")
        shape, k = resolve_input(dataset, input_shape, classes)

        import numpy as np

        from worker.network import build_network

        try:
            net = build_network(c, input_shape=shape, num_classes=k,
                                stem="imagenet" if stem == "imagenet" else "cifar", cells_per_stage=n,
                                filters=filters, stem_multiplier=stem_multiplier)
        except ChildFailed as exc:
            raise UserError(str(exc)) from None
        params = int(net.count_params())
        trainable = int(sum(np.prod(w.shape) for w in net.trainable_weights))
        if as_json:
            print(json.dumps({
                "params": params,
                "trainable_params": trainable,
                "arch_id": c.arch_id,
                "cell": c.to_list(),
                "readable": c.readable(),
                "input_shape": list(shape),
                "classes": k,
                "stem": stem,
                "n": n,
                "filters": filters,
                "cells": 3 * n + (2 if stem == "imagenet" else 0),
                "layers": len(net.layers),
            }))
            return
        net.summary(line_length=110)
        print(f"cell {c.arch_id}: {c.readable()}")
        print(f"{params:,} parameters ({trainable:,} trainable); input {shape}, {k} classes, "
              f"stem {stem}, N={n}, F={filters}")
