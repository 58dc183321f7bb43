"""`pnas train`: train one child network locally and print its per-epoch history and reward."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import typer
from pydantic import ValidationError

from pnas.commands._cells import CELL_HELP, parse_cell_arg
from shared.config import TrainConfig
from shared.errors import ChildFailed, ChildRetryable, UserError


def _config(**flags) -> TrainConfig:
    try:
        return TrainConfig(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        # every bad flag at once, by its flag name
        parts = [f"invalid {'.'.join(str(p) for p in e['loc']).replace('_', '-') or 'setting'}: {e['msg']}" for e in exc.errors()]
        raise UserError("; ".join(parts)) from None


def _checkpoints(cell, cfg: TrainConfig, seed: int):
    """`pnas train --checkpoint-every N`: checkpoints under ROOT/train/ARCH-sSEED; a rerun resumes."""
    if not cfg.checkpoint_every:
        return None
    from shared.settings import get_settings
    from worker.checkpoints import CheckpointStore, ChildCheckpoints

    store = CheckpointStore.from_settings(get_settings())
    d = f"{store.root}/train/{cell.arch_id}-s{seed}"
    attempt = 1 + max((a for a, _e, _p in store.checkpoints_in(d)), default=0)
    return ChildCheckpoints(store, 0, 0, attempt, "train", cfg.checkpoint_every, dir=d)


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        cell: str = typer.Option(..., "--cell", help=CELL_HELP),
        dataset: str = typer.Option(None, "--dataset", help="cifar10, cifar100, mnist, fashion_mnist, digits, npz:PATH or folder:PATH (default cifar10)."),
        epochs: int = typer.Option(None, "--epochs", help="Training epochs (default 20; 0 = evaluate the untrained network)."),
        n: int = typer.Option(None, "--n", "-N", help="N: cells per stage (default 2)."),
        filters: int = typer.Option(None, "--filters", "-F", help="F: filters per block (default 24)."),
        stem: str = typer.Option(None, "--stem", help="cifar or imagenet."),
        lr: float = typer.Option(None, "--lr", help="Initial learning rate, cosine-decayed to 0 (default 0.01)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Default 128."),
        validation_size: float = typer.Option(None, "--validation-size", help=">= 1: images held out; < 1: a fraction (default: 5000 for CIFAR, MNIST, Fashion-MNIST; 0.1 for digits and npz:)."),
        max_train_samples: int = typer.Option(None, "--max-train-samples", help="Use at most this many training images."),
        reward: str = typer.Option(None, "--reward", help="best or final epoch's validation accuracy."),
        seed: int = typer.Option(0, "--seed", help="Weights and batch order."),
        data_seed: int = typer.Option(None, "--data-seed", help="Validation split (default 0)."),
        deterministic: bool = typer.Option(False, "--deterministic", help="TensorFlow op determinism: the same numbers on a GPU too (slower)."),
        augment: str = typer.Option(None, "--augment", help="standard (normalise, pad+crop, flip), none, or auto (default: standard for CIFAR, none otherwise)."),
        cutout: int = typer.Option(None, "--cutout", help="Cutout square side in pixels (default 0 = off)."),
        image_size: int = typer.Option(None, "--image-size", help="folder: datasets are resized to this square size."),
        evaluate_test: bool = typer.Option(True, "--evaluate-test/--no-evaluate-test", help="Also measure test accuracy where the dataset has a test split (never the reward)."),
        checkpoint_every: int = typer.Option(0, "--checkpoint-every", help="Save a checkpoint every N epochs (0 = never, the default); the same command run again resumes from the newest."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the table."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch progress lines."),
    ) -> None:
        """Train CELL once and print the per-epoch metrics and its reward."""
        c = parse_cell_arg(cell)
        cfg = _config(dataset=dataset, epochs=epochs, cells_per_stage=n, filters=filters, stem=stem,
                      learning_rate=lr, batch_size=batch_size, validation_size=validation_size,
                      max_train_samples=max_train_samples, reward=reward, data_seed=data_seed,
                      deterministic=deterministic or None,
                      augment=augment, cutout=cutout, image_size=image_size, evaluate_test=evaluate_test,
                      checkpoint_every=checkpoint_every)

        from shared.settings import get_settings
        from worker.datasets import load_dataset
        from worker.training import train_child

        data = load_dataset(cfg.dataset, validation_size=cfg.validation_size, seed=cfg.data_seed,
                            cache_dir=get_settings().data_dir, max_train_samples=cfg.max_train_samples,
                            image_size=cfg.image_size)
        log = None if (quiet or as_json) else (lambda m: print(m, file=sys.stderr, flush=True))
        try:
            ckpts = _checkpoints(c, cfg, seed)
            result = train_child(c, cfg, dataset=data, seed=seed, log=log, checkpoints=ckpts)
            if ckpts is not None:
                ckpts.succeeded()  # trained to the end: nothing left to resume
        except (ChildFailed, ChildRetryable) as exc:
            print(f"error: child {c.arch_id} failed: {exc}", file=sys.stderr)
            sys.exit(1)  # the CLI runs click with standalone_mode=False: typer.Exit would be lost

        best = result.history[result.reward_epoch - 1] if result.reward_epoch else None
        val_accuracy = best.val_accuracy if best else result.reward
        if as_json:
            out = {"arch_id": c.arch_id, "cell": c.to_list(), "readable": c.readable(),
                   "config": cfg.model_dump(), "seed": seed, **asdict(result),
                   "val_accuracy": val_accuracy,
                   "images_per_second": result.extra.get("images_per_second"),
                   "augment": result.extra.get("augment")}
            print(json.dumps(out))
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{c.arch_id}: {c.readable()}")
        for col in ("epoch", "loss", "accuracy", "val loss", "val accuracy", "seconds"):
            t.add_column(col, justify="right")
        for m in result.history:
            t.add_row(str(m.epoch), f"{m.loss:.4f}", f"{m.accuracy:.4f}", f"{m.val_loss:.4f}",
                      f"{m.val_accuracy:.4f}", f"{m.seconds:.1f}")
        if result.history:
            Console().print(t)
        test = "" if result.test_accuracy is None else f"; test accuracy {result.test_accuracy:.4f} (not the reward)"
        print(f"reward {result.reward:.4f} (validation accuracy, epoch {result.reward_epoch}){test}; "
              f"{result.params:,} parameters; {result.wall_seconds:.1f}s on {result.device}; "
              f"augmentation {result.extra.get('augment')}; "
              f"{data.name}: {data.n_train} train / {data.n_val} validation / {data.n_test} test images")
