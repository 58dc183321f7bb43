"""What multi-fidelity saves and what it costs the controller, at the paper's setting with the
instant trainer (`tests/fakes.py`: learning curves that rise to a synthetic reward; no data).

One search per fidelity, side by side in one process on SQLite, children trained in the
controller's thread (`tests.fakes.InlineExecutor`): 8 operators, B=5, K=256, 20 epochs per
child, ASHA with r=1 and eta=3 (rungs 1, 3, 9, 20). The predictor is a small MLP (1 member,
few epochs): it is not what is measured. Reported per fidelity: children trained, child-epochs
spent (each child's epochs once) against full fidelity, children that reached the full epochs,
and for asha the promotions with the controller's time deciding and writing them
(`controller.fidelity.Promoter`: reading the level's children, choosing, one conditional
update per promotion), per promotion and per decision round. The instant trainer trains a
level in one poll, so the decision rounds are fewer than with real workers, where a round
runs whenever a child of the level finished since the last poll.

    .venv/bin/python bench/fidelity_cost.py                    # the paper's setting, minutes
    .venv/bin/python bench/fidelity_cost.py -B 3 -K 32         # smaller, seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine  # noqa: E402

PAPER_OPS = "sep3x3,sep5x5,sep7x7,conv1x7_7x1,identity,avg3x3,max3x3,dil3x3"


def one(fidelity: str, args, out: Path) -> dict:
    from controller.search import Controller
    from shared.config import build_config
    from shared.settings import Settings
    from shared.store import Store
    from tests.fakes import InlineExecutor

    url = f"sqlite:///{out / f'{fidelity}.db'}"
    store = Store(url)
    store.ensure_schema(auto_upgrade=True)
    settings = Settings(database_url=url, poll_seconds=0.01, checkpoint_url=str(out / f"ck-{fidelity}"))
    cfg, _ = build_config(preset="quick", overrides=dict(
        ops=PAPER_OPS, blocks=args.blocks, beam=args.beam, predictor="mlp", ensemble=1, predictor_epochs=5,
        fidelity=fidelity, min_epochs=args.min_epochs, reduction_factor=args.eta, train={"epochs": args.epochs}))  # fmt: skip
    ctl = Controller(store=store, executor=InlineExecutor(store, settings), settings=settings)
    t0 = time.perf_counter()
    run = ctl.run(ctl.open_run(name=fidelity, config=cfg))
    wall = time.perf_counter() - t0
    jobs = store.jobs(run.id)
    spent = store.child_epochs(run.id)
    p = ctl.promoter
    return {
        "children": len(jobs), "spent": spent["spent"], "full": spent["full_fidelity"],
        "at_full": sum(j.epochs_trained == args.epochs for j in jobs), "wall": wall,
        "promoted": p.promoted if p else 0, "decide_s": p.seconds if p else 0.0, "rounds": p.rounds if p else 0,
        "best_full": max(j.reward for j in jobs if j.epochs_trained == args.epochs),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", "-B", type=int, default=5)
    ap.add_argument("--beam", "-K", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--eta", type=int, default=3)
    args = ap.parse_args()
    print(f"# {machine()}; B={args.blocks} K={args.beam} epochs={args.epochs} r={args.min_epochs} eta={args.eta}")
    with tempfile.TemporaryDirectory() as d:
        rows = {f: one(f, args, Path(d)) for f in ("full", "asha")}
    for f, r in rows.items():
        line = (f"{f:>5}: {r['children']} children, {r['spent']:,} child-epochs ({r['spent'] / r['full']:.1%} of full fidelity), "
                f"{r['at_full']} trained to {args.epochs} epochs, best of those {r['best_full']:.4f}, wall {r['wall']:.1f}s")  # fmt: skip
        if r["promoted"]:
            line += (f"; {r['promoted']} promotions in {r['rounds']} decision rounds, {r['decide_s']:.2f}s deciding: "
                     f"{r['decide_s'] / r['promoted'] * 1e3:.2f} ms per promotion, {r['decide_s'] / r['rounds'] * 1e3:.1f} ms per round")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
