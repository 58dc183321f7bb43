"""Does the surrogate earn its keep? PNAS against random search at the same budget, on digits.

For each seed, two real `pnas search` runs with real training (the default trainer,
`worker.training:train_child`) on the embedded default (SQLite + the local executor with
``--workers`` processes), each into its own SQLite file:

- ``--strategy pnas``: level b's K children are the surrogate's top K of the expansion;
- ``--strategy random``: K children drawn at random from the same kind of expansion.

Both train the same number of children: every one-block cell at b=1 (the same cells, the
same seed, so level 1 is shared ground), then K per level up to B. Reported per strategy,
mean and std over seeds:

- top-5: the mean of the 5 best validation accuracies among all trained children (the
  figure a user sees in `pnas top`);
- top-5 of b>=2: the same among the children the strategy chose (levels 2..B only), which
  is where the two strategies differ;
- last level: the mean accuracy of the K children at b=B;
- the predictor's Spearman per level, from the levels table: ``spearman_extrapolation``
  (predicted vs measured on the children it chose, b>=2) and ``spearman_insample`` (after
  refitting on everything so far). Random search fits no predictor.

    .venv/bin/python bench/search_quality.py                       # 3 seeds, B=3, K=8, 2 epochs
    .venv/bin/python bench/search_quality.py --seeds 5 --epochs 3
    .venv/bin/python bench/search_quality.py --quick               # smoke test, a few minutes

Runs that already finished in ``--out`` are reused (`pnas search` resumes by name), so an
interrupted benchmark continues where it stopped. The last line is the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, machine  # noqa: E402

STRATEGIES = ("pnas", "random")


def search_cmd(args, strategy: str, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "pnas.cli", "search", "--preset", "quick", "--executor", "local",
        "--name", f"{strategy}-s{seed}", "--strategy", strategy, "--seed", str(seed),
        "--dataset", "digits", "--ops", args.ops, "--blocks", str(args.blocks), "--beam", str(args.beam),
        "--epochs", str(args.epochs), "--filters", str(args.filters), "--n", str(args.n),
        "--workers", str(args.workers),
    ]  # fmt: skip


def run_search(args, strategy: str, seed: int, out: Path) -> Path:
    """One `pnas search` subprocess into ``out/<strategy>-s<seed>.db``; returns the file."""
    db = out / f"{strategy}-s{seed}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}  # default trainer, no broker
    env.update(PNAS_DATABASE_URL=f"sqlite:///{db}", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    cmd = search_cmd(args, strategy, seed)
    t0 = time.perf_counter()
    with open(out / f"{strategy}-s{seed}.log", "a") as log:
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        sys.exit(f"`{' '.join(cmd[2:])}` failed ({res.returncode}); see {out / f'{strategy}-s{seed}.log'}")
    print(f"  {strategy} seed {seed}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return db


def read_run(db: Path, name: str, blocks: int) -> dict:
    """The figures of one finished run, read from its SQLite file through the store."""
    from shared.store import Store

    store = Store(f"sqlite:///{db}")
    try:
        run = store.require_run(name)
        if run.state != "finished":
            raise SystemExit(f"run {name} in {db} is {run.state}, not finished")
        ok = [j for j in store.jobs(run.id) if j.state == "succeeded"]
        levels = store.levels(run.id)
    finally:
        store.dispose()
    acc = sorted((j.reward for j in ok), reverse=True)
    chosen = sorted((j.reward for j in ok if j.level >= 2), reverse=True)
    last = [j.reward for j in ok if j.level == blocks]
    started = min(lv.started_at for lv in levels)
    finished = max(lv.finished_at for lv in levels if lv.finished_at)
    return {
        "children": len(ok),
        "top1": acc[0],
        "top5": statistics.mean(acc[:5]),
        "top5_chosen": statistics.mean(chosen[:5]) if chosen else None,
        "last_level_mean": statistics.mean(last) if last else None,
        "minutes": (finished - started).total_seconds() / 60,
        "spearman_extrapolation": {lv.b: lv.spearman_extrapolation for lv in levels},
        "spearman_insample": {lv.b: lv.spearman_insample for lv in levels},
    }


def ms(xs: list[float | None], fmt: str = ".4f") -> str:
    """'mean±std' over the values that exist ('n/a' when none)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{fmt}}±{sd:{fmt.lstrip('+')}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, one run per strategy each")
    ap.add_argument("--blocks", "-B", type=int, default=3)
    ap.add_argument("--beam", "-K", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per child")
    ap.add_argument("--ops", default="sep3x3,max3x3,identity")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--n", type=int, default=1, help="cells per stage")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes per search")
    ap.add_argument("--out", type=Path, help="folder for the SQLite files and logs (default: a new temporary one)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 seeds, 2 operators, B=2, K=2, 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.ops, args.blocks, args.beam, args.epochs = 2, "sep3x3,max3x3", 2, 2, 1
    out = args.out or Path(tempfile.mkdtemp(prefix="pnas-bench-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"runs in {out}; each: {' '.join(search_cmd(args, 'STRATEGY', 0)[2:]).replace('-s0', '-sSEED').replace('--seed 0', '--seed SEED')}", flush=True)

    rows: dict[str, list[dict]] = {s: [] for s in STRATEGIES}
    for seed in range(args.seeds):
        order = STRATEGIES if seed % 2 == 0 else STRATEGIES[::-1]  # spread drift in the load over both
        for strategy in order:
            db = run_search(args, strategy, seed, out)
            rows[strategy].append({"seed": seed, **read_run(db, f"{strategy}-s{seed}", args.blocks)})
        p, r = rows["pnas"][-1], rows["random"][-1]
        print(
            f"seed {seed}: top-5 pnas {p['top5']:.4f} random {r['top5']:.4f}; "
            f"top-5 of b>=2 pnas {p['top5_chosen']:.4f} random {r['top5_chosen']:.4f}; "
            f"last level mean pnas {p['last_level_mean']:.4f} random {r['last_level_mean']:.4f}; "
            f"children {p['children']} / {r['children']}",
            flush=True,
        )
    (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}, indent=1))

    for s in STRATEGIES:
        xs = rows[s]
        print(
            f"{s:6}: top-5 {ms([x['top5'] for x in xs])}, top-1 {ms([x['top1'] for x in xs])}, "
            f"top-5 of b>=2 {ms([x['top5_chosen'] for x in xs])}, last level mean {ms([x['last_level_mean'] for x in xs])}, "
            f"{xs[0]['children']} children, {ms([x['minutes'] for x in xs], '.1f')} min per search"
        )
    diff = [p["top5"] - r["top5"] for p, r in zip(rows["pnas"], rows["random"])]
    diff_chosen = [p["top5_chosen"] - r["top5_chosen"] for p, r in zip(rows["pnas"], rows["random"])]
    rho = []
    for b in range(1, args.blocks + 1):
        ex = ms([x["spearman_extrapolation"].get(b) for x in rows["pnas"]], ".2f")
        ins = ms([x["spearman_insample"].get(b) for x in rows["pnas"]], ".2f")
        rho.append(f"b={b} extrapolation {ex} in-sample {ins}")
    print("pnas predictor Spearman (mean±std over seeds): " + "; ".join(rho))
    p, r = rows["pnas"], rows["random"]
    print(
        f"summary: digits, ops {args.ops}, B={args.blocks} K={args.beam}, {args.epochs} epochs, F={args.filters} N={args.n}, "
        f"{args.seeds} seeds, {p[0]['children']} children per search: mean of top-5 val acc PNAS {ms([x['top5'] for x in p])} "
        f"vs random {ms([x['top5'] for x in r])} (paired diff {ms(diff, '+.4f')}); top-5 of levels>=2 PNAS "
        f"{ms([x['top5_chosen'] for x in p])} vs random {ms([x['top5_chosen'] for x in r])} (paired diff {ms(diff_chosen, '+.4f')}); "
        f"PNAS Spearman extrapolation {', '.join(f'b={b} ' + ms([x['spearman_extrapolation'].get(b) for x in p], '.2f') for b in range(2, args.blocks + 1))}; "
        f"min per search PNAS {ms([x['minutes'] for x in p], '.1f')} random {ms([x['minutes'] for x in r], '.1f')}; {machine()}"
    )


if __name__ == "__main__":
    main()
