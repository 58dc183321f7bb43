"""Does the surrogate earn its keep? PNAS against random search and regularized evolution at the
same budget, on digits.

For each seed, one real `pnas search` run per strategy on the embedded default (SQLite + the
local executor with ``--workers`` processes), each into its own SQLite file:

- ``--strategy pnas``: level b's K children are the surrogate's top K of the expansion;
- ``--strategy random``: K children drawn at random from the same kind of expansion;
- ``--strategy evolution``: regularized evolution (`controller.evolution`) in generations.

All train the same number of children (PNAS's budget: every one-block network at b=1, then K
per level up to B). Reported per strategy, mean and std over seeds:

- top-5: the mean of the 5 best validation accuracies among all trained children (the
  figure a user sees in `pnas top`), and top-1;
- top-5 of the chosen: the same among levels >= 2 (where the strategies differ);
- last level: the mean accuracy of the last level's (or generation's) children;
- best so far against children trained (in the order the strategy chose them), drawn as a
  PNG (mean over seeds, min-max band);
- the predictor's Spearman per level (PNAS only): ``spearman_extrapolation`` (predicted vs
  measured on the children it chose) and ``spearman_insample``;
- duplicates: per level, the candidates of the expansion against the distinct networks among
  them that the run did not have yet (what a strategy without network ids chose from).

Children train with the real trainer (``--trainer real``, `worker.training:train_child`) or
with the instant trainer of the tests (``--trainer instant``: a synthetic, noise-free reward
of the cell, `tests/fakes.py`), which shows the strategies' behaviour in seconds but is no
accuracy on data.

    .venv/bin/python bench/search_quality.py                        # 3 seeds, B=3, K=8, 2 epochs
    .venv/bin/python bench/search_quality.py --ops paper -B 3 -K 32 --epochs 1 --trainer instant
    .venv/bin/python bench/search_quality.py --ops paper -B 3 -K 32 --epochs 1 --predictor mlp --out DIR   # about 3 h on 2 CPU cores
    .venv/bin/python bench/search_quality.py --quick                # smoke test, a few minutes

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

STRATEGIES = ("pnas", "random", "evolution")
PAPER_OPS = "sep3x3,sep5x5,sep7x7,conv1x7_7x1,identity,avg3x3,max3x3,dil3x3"


def search_cmd(args, strategy: str, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "pnas.cli", "search", "--preset", "quick", "--executor", "local",
        "--name", f"{strategy}-s{seed}", "--strategy", strategy, "--seed", str(seed),
        "--dataset", "digits", "--ops", args.ops, "--blocks", str(args.blocks), "--beam", str(args.beam),
        "--epochs", str(args.epochs), "--filters", str(args.filters), "--n", str(args.n),
        "--workers", str(args.workers), "--predictor", args.predictor,
    ]  # fmt: skip


def run_search(args, strategy: str, seed: int, out: Path) -> Path:
    """One `pnas search` subprocess into ``out/<strategy>-s<seed>.db``; returns the file."""
    db = out / f"{strategy}-s{seed}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}  # default trainer, no broker
    env.update(PNAS_DATABASE_URL=f"sqlite:///{db}", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    if args.trainer == "instant":
        env["PNAS_TRAINER"] = "tests.fakes:instant_trainer"
    cmd = search_cmd(args, strategy, seed)
    t0 = time.perf_counter()
    with open(out / f"{strategy}-s{seed}.log", "a") as log:
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        sys.exit(f"`{' '.join(cmd[2:])}` failed ({res.returncode}); see {out / f'{strategy}-s{seed}.log'}")
    print(f"  {strategy} seed {seed}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return db


def read_run(db: Path, name: str) -> dict:
    """The figures of one finished run, read from its SQLite file through the store."""
    from shared.store import Store

    store = Store(f"sqlite:///{db}")
    try:
        run = store.require_run(name)
        if run.state != "finished":
            raise SystemExit(f"run {name} in {db} is {run.state}, not finished")
        jobs = store.jobs(run.id)  # in job id order: the order the strategy chose them
        levels = store.levels(run.id)
    finally:
        store.dispose()
    ok = [j for j in jobs if j.state == "succeeded"]
    acc = sorted((j.reward for j in ok), reverse=True)
    chosen = sorted((j.reward for j in ok if j.level >= 2), reverse=True)
    last_level = max(j.level for j in ok)
    best, curve = 0.0, []
    for j in jobs:
        best = max(best, j.reward or 0.0)
        curve.append(best)
    started = min(lv.started_at for lv in levels)
    finished = max(lv.finished_at for lv in levels if lv.finished_at)
    return {
        "children": len(ok),
        "top1": acc[0],
        "top5": statistics.mean(acc[:5]),
        "top5_chosen": statistics.mean(chosen[:5]) if chosen else None,
        "last_level_mean": statistics.mean(j.reward for j in ok if j.level == last_level),
        "minutes": (finished - started).total_seconds() / 60,
        "best_so_far": curve,
        "candidates": {lv.b: (lv.candidates, lv.distinct_candidates) for lv in levels},
        "spearman_extrapolation": {lv.b: lv.spearman_extrapolation for lv in levels},
        "spearman_insample": {lv.b: lv.spearman_insample for lv in levels},
    }


def plot(rows: dict[str, list[dict]], path: Path, title: str, ylabel: str) -> None:
    """Best so far against children trained: the mean over seeds, the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for strategy, runs in rows.items():
        n = min(len(r["best_so_far"]) for r in runs)
        curves = np.array([r["best_so_far"][:n] for r in runs])
        x = np.arange(1, n + 1)
        ax.plot(x, curves.mean(0), label=f"{strategy} (mean of {len(runs)} seeds)")
        ax.fill_between(x, curves.min(0), curves.max(0), alpha=0.2)
    ax.set_xlabel("children trained")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def ms(xs: list[float | None], fmt: str = ".4f") -> str:
    """'mean±std' over the values that exist ('n/a' when none)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):{fmt}}±{sd:{fmt.lstrip('+')}}"


def _seeds(text: str) -> list[int]:
    """``3`` is seeds 0, 1, 2; ``1,2,0`` is those seeds in that order (finished runs are reused);
    one seed alone is a list of one: ``0,``."""
    try:
        seeds = list(range(int(text))) if "," not in text else [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise argparse.ArgumentTypeError(f"--seeds takes a count (3), a list (1,2,0) or one seed as a list (0,), not {text!r}")
    return seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=_seeds, default=_seeds("3"),
                    help="N: seeds 0..N-1, one run per strategy each; or a comma-separated list, run in its order (one seed: 0,)")
    ap.add_argument("--blocks", "-B", type=int, default=3)
    ap.add_argument("--beam", "-K", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per child")
    ap.add_argument("--ops", default="sep3x3,max3x3,identity", help="comma-separated, or 'paper' for the 8 of the paper")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--n", type=int, default=1, help="cells per stage")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes per search")
    ap.add_argument("--predictor", default="lstm", help="lstm (the paper's) or mlp")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, from pnas, random, evolution")
    ap.add_argument("--trainer", choices=("real", "instant"), default="real",
                    help="real: train on digits; instant: the tests' synthetic reward (seconds, no data)")
    ap.add_argument("--out", type=Path, help="folder for the SQLite files, logs and the PNG (default: a new temporary one)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 seeds, 2 operators, B=2, K=2, 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.ops, args.blocks, args.beam, args.epochs = [0, 1], "sep3x3,max3x3", 2, 2, 1
    if args.ops == "paper":
        args.ops = PAPER_OPS
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    out = args.out or Path(tempfile.mkdtemp(prefix="pnas-bench-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"runs in {out}; each: {' '.join(search_cmd(args, 'STRATEGY', 0)[2:]).replace('-s0', '-sSEED').replace('--seed 0', '--seed SEED')}"
          f"; trainer {args.trainer}", flush=True)  # fmt: skip

    rows: dict[str, list[dict]] = {s: [] for s in strategies}
    for seed in args.seeds:
        order = strategies if seed % 2 == 0 else strategies[::-1]  # spread drift in the load over all
        for strategy in order:
            db = run_search(args, strategy, seed, out)
            rows[strategy].append({"seed": seed, **read_run(db, f"{strategy}-s{seed}")})
        print(f"seed {seed}: " + "; ".join(f"{s} top-5 {rows[s][-1]['top5']:.4f}, top-1 {rows[s][-1]['top1']:.4f}, "
                                           f"{rows[s][-1]['children']} children" for s in strategies), flush=True)  # fmt: skip
    (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}, indent=1))
    data = "digits" if args.trainer == "real" else "the instant trainer's synthetic reward (no data)"
    title = f"{data}, {len(args.ops.split(','))} ops, B={args.blocks} K={args.beam}, {args.epochs} epoch(s), {len(args.seeds)} seeds"
    png = out / "best_so_far.png"
    plot(rows, png, title, "best validation accuracy so far" if args.trainer == "real" else "best reward so far")
    print(f"best so far against children trained: {png}")

    for s in strategies:
        xs = rows[s]
        n = min(len(x["best_so_far"]) for x in xs)
        marks = ", ".join(f"{k}: {ms([x['best_so_far'][k - 1] for x in xs])}" for k in sorted({n // 4, n // 2, n}) if k)
        print(
            f"{s:9}: top-5 {ms([x['top5'] for x in xs])}, top-1 {ms([x['top1'] for x in xs])}, "
            f"top-5 of levels>=2 {ms([x['top5_chosen'] for x in xs])}, last level mean {ms([x['last_level_mean'] for x in xs])}, "
            f"{xs[0]['children']} children, {ms([x['minutes'] for x in xs], '.1f')} min per search; best so far after {marks}"
        )  # fmt: skip
        if s != "evolution":
            dup = [f"b={b} {statistics.mean(x['candidates'][b][0] for x in xs):,.0f} candidates, "
                   f"{statistics.mean((x['candidates'][b][1] or 0) for x in xs):,.0f} new distinct networks"
                   for b in range(2, args.blocks + 1)]  # fmt: skip
            print(f"{'':9}  duplicates (mean over seeds): " + "; ".join(dup))
    if "pnas" in rows:
        rho = []
        for b in range(1, args.blocks + 1):
            ex = ms([x["spearman_extrapolation"].get(b) for x in rows["pnas"]], ".2f")
            ins = ms([x["spearman_insample"].get(b) for x in rows["pnas"]], ".2f")
            rho.append(f"b={b} extrapolation {ex} in-sample {ins}")
        print("pnas predictor Spearman (mean±std over seeds): " + "; ".join(rho))
    base = rows.get("pnas")
    paired = "; ".join(
        f"pnas - {s} top-5 {ms([p['top5'] - o['top5'] for p, o in zip(base, rows[s])], '+.4f')}"
        for s in strategies if base is not None and s != "pnas"
    )  # fmt: skip
    print(
        f"summary: {title}, {rows[strategies[0]][0]['children']} children per search: mean of top-5 val acc "
        + ", ".join(f"{s} {ms([x['top5'] for x in rows[s]])}" for s in strategies)
        + (f" (paired: {paired})" if paired else "") + f"; {machine()}"
    )


if __name__ == "__main__":
    main()
