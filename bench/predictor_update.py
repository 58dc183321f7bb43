"""Which predictor update ranks the next level better: refit from scratch, or fine-tune?

For each seed, two searches that differ only in ``predictor_update`` (`refit`: a new ensemble
from scratch after every level; `finetune`: at b>1 each member starts from level b-1's
weights, a quarter of the epochs, on every child so far). Children train with the instant
trainer (`tests/fakes.py`: the reward is a synthetic, additive function of the cell's
(input, operator) pairs, no noise) in the controller's own thread (`tests.fakes.InlineExecutor`,
no worker processes), each search into its own SQLite file. Read from the `levels` table:

- ``spearman_extrapolation`` at level b: the level b-1 predictor's scores against the measured
  rewards of the K children it picked. Level 2 is scored by the b=1 predictor, which both
  updates fit the same way (from scratch, same seed), so the two differ from level 3 on;
- ``spearman_insample`` after each level's update, and the wall time per search.

    .venv/bin/python bench/predictor_update.py                    # 3 seeds, 8 ops, B=4, K=32, MLP
    .venv/bin/python bench/predictor_update.py --seeds 5 --predictor lstm --predictor-epochs 60
    .venv/bin/python bench/predictor_update.py --finetune-share 1.0 --updates finetune  # all epochs
    .venv/bin/python bench/predictor_update.py --predictor lstm --trainer keras   # the earlier trainer
    .venv/bin/python bench/predictor_update.py --predictor lstm --batches mixed   # any cells in a batch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine  # noqa: E402

UPDATES = ("refit", "finetune")


def run_search(args, update: str, seed: int, out: Path) -> dict:
    """One search in this process; its per-level Spearman and wall time."""
    from controller.search import Controller
    from shared.config import build_config
    from shared.settings import Settings
    from shared.store import Store
    from tests.fakes import InlineExecutor

    url = f"sqlite:///{out / f'{update}-s{seed}.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.05)
    cfg, _ = build_config(overrides=dict(
        blocks=args.blocks, beam=args.beam, predictor=args.predictor, ensemble=args.ensemble,
        predictor_epochs=args.predictor_epochs, predictor_update=update, seed=seed,
        train={"dataset": "digits", "validation_size": 0.2, "epochs": 1},
    ))  # fmt: skip
    t0 = time.perf_counter()
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    run = ctl.run(ctl.open_run(name=f"{update}-s{seed}", config=cfg))
    took = time.perf_counter() - t0
    levels = store.levels(run.id)
    ok = [j for j in store.jobs(run.id) if j.state == "succeeded"]
    store.dispose()
    return {
        "seconds": took,
        "children": len(ok),
        "last_mean": statistics.mean(j.reward for j in ok if j.level == args.blocks),
        "extrap": {lv.b: lv.spearman_extrapolation for lv in levels},
        "insample": {lv.b: lv.spearman_insample for lv in levels},
    }


def ms(xs: list, fmt: str = ".3f") -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{fmt}}±{sd:{fmt.lstrip('+')}} (min {min(xs):{fmt}}, max {max(xs):{fmt}})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, one search per update each")
    ap.add_argument("--blocks", "-B", type=int, default=4)
    ap.add_argument("--beam", "-K", type=int, default=32)
    ap.add_argument("--predictor", default="mlp")
    ap.add_argument("--ensemble", type=int, default=5)
    ap.add_argument("--predictor-epochs", type=int, default=100)
    ap.add_argument("--finetune-share", type=float, default=None,
                    help="a fine-tune's share of the epochs (default: FINETUNE_EPOCH_SHARE, 0.25)")
    ap.add_argument("--trainer", default="stacked", choices=("stacked", "keras"),
                    help="how every fit of the searches trains (`fit_ensemble`'s trainer)")
    ap.add_argument("--batches", default=None, choices=("mixed", "by_length"),
                    help="how the stacked trainer makes batches (default: the project's for the predictor, `ensemble.BATCHES`)")
    ap.add_argument("--updates", default=",".join(UPDATES), help="which to run (refit is deterministic: rerun it once)")
    args = ap.parse_args()
    updates = args.updates.split(",")
    if args.finetune_share is not None:
        import controller.predictor.ensemble as ensemble

        ensemble.FINETUNE_EPOCH_SHARE = args.finetune_share  # read when each fine-tune starts
    import functools

    import controller.predictor as predictor
    from controller.predictor import finetune_epochs

    from controller.predictor.ensemble import BATCHES

    args.batches = args.batches or (BATCHES[args.predictor] if args.trainer == "stacked" else "mixed")
    predictor.fit_ensemble = functools.partial(predictor.fit_ensemble, trainer=args.trainer, batches=args.batches)  # refit imports it per fit

    print(machine(), flush=True)
    print(f"8 operators, B={args.blocks}, K={args.beam}, {args.predictor} x{args.ensemble}, "
          f"{args.predictor_epochs} epochs from scratch, a fine-tune {finetune_epochs(args.predictor_epochs)}, "
          f"{args.trainer} trainer, {args.batches} batches, "
          "instant trainer, in-process", flush=True)  # fmt: skip
    res: dict[str, list[dict]] = {u: [] for u in updates}
    with tempfile.TemporaryDirectory() as d:
        for seed in range(args.seeds):
            for update in updates:
                r = run_search(args, update, seed, Path(d))
                res[update].append(r)
                ex = " ".join(f"b={b} {v:+.3f}" for b, v in sorted(r["extrap"].items()) if v is not None)
                print(f"seed {seed} {update:8}: extrapolation {ex}; last level mean {r['last_mean']:.4f}; "
                      f"{r['children']} children, {r['seconds']:.0f} s", flush=True)  # fmt: skip
    for b in range(2, args.blocks + 1):
        per = {u: [r["extrap"][b] for r in res[u]] for u in updates}
        line = f"b={b} extrapolation: " + "; ".join(f"{u} {ms(per[u])}" for u in updates)
        if len(per) == 2:
            diff = [f - r for f, r in zip(per["finetune"], per["refit"], strict=True) if f is not None and r is not None]
            line += f"; finetune - refit {ms(diff, '+.3f')}, finetune higher in {sum(d > 0 for d in diff)}/{len(diff)} seeds"
        print(line)
    for b in range(1, args.blocks + 1):
        print(f"b={b} in-sample: " + "; ".join(f"{u} {ms([r['insample'][b] for r in res[u]])}" for u in updates))
    for u in updates:
        print(f"{u}: last level mean {ms([r['last_mean'] for r in res[u]], '.4f')}, "
              f"{ms([r['seconds'] for r in res[u]], '.0f')} s per search")  # fmt: skip


if __name__ == "__main__":
    main()
