"""Mixed precision + XLA against float32: child training images/s on a GPU.

Runs `train_child` on synthetic CIFAR-sized data (32x32x3, 10 classes) for each variant and
reports steady-state training images/s (epochs after the first, which traces and compiles).
Prepared to finish within a few minutes on one H100:

    .venv/bin/python bench/child_training_gpu.py                    # GPU, the search setting
    .venv/bin/python bench/child_training_gpu.py --smoke            # CPU, tiny: does it run?
    .venv/bin/python bench/child_training_gpu.py --json-out $OUT/gpu_bench.json
    .venv/bin/python bench/child_training_gpu.py --recipe paper-cifar --n 3 --filters 48 \
        --batch-size 128 --epochs 3 --train 10000      # the final recipe, short: aux head,
                                                       # drop path, clipping, augmentation

The last line is the summary: speed-up of mixed precision + XLA over float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child_training import synthetic  # noqa: E402
from shared.config import TrainConfig  # noqa: E402
from shared.recipes import recipe  # noqa: E402
from shared.space import BUILTIN_CELLS  # noqa: E402
from worker.device import current_device  # noqa: E402
from worker.training import train_child  # noqa: E402

VARIANTS = {  # name -> (mixed_precision, jit_compile)
    "fp32": ("off", "off"),
    "fp32+xla": ("off", "on"),
    "mixed": ("on", "off"),
    "mixed+xla": ("on", "on"),
}


def run_variant(name: str, args, ds) -> dict:
    mp, jit = VARIANTS[name]
    base = recipe(args.recipe) if args.recipe else {"learning_rate": 0.05}
    cfg = TrainConfig(**{**base, "dataset": "synthetic", "epochs": args.epochs, "filters": args.filters,
                         "cells_per_stage": args.n, "batch_size": args.batch_size,
                         "mixed_precision": mp, "jit_compile": jit,
                         "augment": base.get("augment", "none"), "evaluate_test": False})
    t0 = time.perf_counter()
    r = train_child(BUILTIN_CELLS[args.cell], cfg, dataset=ds, seed=0)
    secs = [m.seconds for m in r.history]
    steady = secs[1:] or secs
    ips = len(ds.x_train) * len(steady) / sum(steady)
    row = {"variant": name, "images_per_second": ips, "epoch_seconds": secs,
           "first_epoch_seconds": secs[0], "wall_seconds": time.perf_counter() - t0,
           "reward": r.reward, "params": r.params, "device": r.device,
           "mixed_precision": r.extra["mixed_precision"], "jit_compile": r.extra["jit_compile"],
           "recipe": args.recipe, "aux_head": cfg.aux_head, "drop_path_keep_prob": cfg.drop_path_keep_prob,
           "augment": r.extra["augment"]}
    print(f"{name:10s} {ips:10.1f} images/s  first epoch {secs[0]:.1f}s  "
          f"epochs {', '.join(f'{s:.2f}' for s in secs)}  val acc {r.reward:.3f}", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny settings, for a CPU check")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--val", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3, help="the first one is warm-up")
    ap.add_argument("--n", type=int, default=2, help="N (paper's search setting: 2)")
    ap.add_argument("--filters", type=int, default=24, help="F (paper's search setting: 24)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--cell", default="pnasnet5")
    ap.add_argument("--variants", default="fp32,mixed,mixed+xla",
                    help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--json-out", default=None, help="also write the rows here")
    ap.add_argument("--recipe", default=None, help="train with a `pnas final` recipe (paper-cifar)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.train, args.val, args.epochs, args.n, args.filters, args.batch_size = 256, 64, 2, 1, 8, 64
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or "fp32" not in names:
        ap.error(f"--variants must include fp32 and come from {', '.join(VARIANTS)}")

    dev = current_device()
    print(f"device: {dev.name} (compute capability {dev.compute_capability}); "
          f"{args.cell} N={args.n} F={args.filters}, {args.train} images, batch {args.batch_size}, "
          f"{args.epochs} epochs, recipe {args.recipe or 'none (the search setting)'}", flush=True)
    ds = synthetic(args.train, args.val)
    rows = [run_variant(v, args, ds) for v in names]
    base = next(r for r in rows if r["variant"] == "fp32")["images_per_second"]
    best = max(rows, key=lambda r: r["images_per_second"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"device": dev.name, "args": vars(args), "rows": rows}, indent=1))
    fast = next((r for r in rows if r["variant"] == "mixed+xla"), best)
    print(f"SUMMARY {dev.name}: {fast['variant']} {fast['images_per_second']:.0f} images/s vs fp32 "
          f"{base:.0f} = {fast['images_per_second'] / base:.2f}x (best: {best['variant']} "
          f"{best['images_per_second'] / base:.2f}x)")


if __name__ == "__main__":
    main()
