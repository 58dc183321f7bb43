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

Arms (``--arms``, `bench/_arms.py`) set a strategy's runs further: ``--fidelity full,asha``
runs every strategy at each fidelity (``--min-epochs``, ``--reduction-factor``); an arm such
as ``pnas-asha-sameepochs`` raises K until asha spends the child-epochs of the seed's
``pnas-full`` run, ``pnas-maxparams`` searches under ``--max-params`` (default: the median
params of ``pnas-full``'s level-2 children), ``pnas-pareto`` uses ``--objective pareto --cost
params``. Accuracies are of children trained to the full epochs. Per arm and seed also:
child-epochs spent, the best accuracy within the params budget, and the hypervolume of the
trained (accuracy, params) front against accuracy 0 and the params of the space's largest
network (`bench/hypervolume.py`), divided by those params (1 = accuracy 1 at no params).

    .venv/bin/python bench/search_quality.py --ops paper -B 2 -K 16 --epochs 4 --lookback 1 --predictor mlp \
        --min-epochs 1 --reduction-factor 2 --arms pnas-full,pnas-asha,pnas-asha-sameepochs,pnas-maxparams,pnas-pareto,random

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

from bench._arms import STRATEGIES, Arm, derived_flags, parse_arms, read_run  # noqa: E402
from bench._common import ROOT, machine  # noqa: E402
from bench.hypervolume import hypervolume_2d  # noqa: E402

PAPER_OPS = "sep3x3,sep5x5,sep7x7,conv1x7_7x1,identity,avg3x3,max3x3,dil3x3"


def search_cmd(args, arm: Arm, seed: int, extra: list[str] = ()) -> list[str]:
    cmd = [
        sys.executable, "-m", "pnas.cli", "search", "--preset", "quick", "--executor", "local",
        "--name", f"{arm.name}-s{seed}", "--strategy", arm.strategy, "--seed", str(seed),
        "--dataset", "digits", "--ops", args.ops, "--blocks", str(args.blocks), "--beam", str(args.beam),
        "--epochs", str(args.epochs), "--filters", str(args.filters), "--n", str(args.n),
        "--workers", str(args.workers), "--predictor", args.predictor,
    ]  # fmt: skip
    if args.lookback != 2:
        cmd += ["--lookback", str(args.lookback)]
    if arm.fidelity == "asha":
        cmd += ["--fidelity", "asha", "--min-epochs", str(args.min_epochs), "--reduction-factor", str(args.reduction_factor)]
    if arm.pareto:
        cmd += ["--objective", "pareto", "--cost", "params"]
    for flag, value in zip(extra[::2], extra[1::2]):  # derived settings replace the defaults
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = value
        else:
            cmd += [flag, value]
    return cmd


def run_search(args, arm: Arm, seed: int, out: Path, extra: list[str] = ()) -> Path:
    """One `pnas search` subprocess into ``out/<arm>-s<seed>.db``; returns the file."""
    name = f"{arm.name}-s{seed}"
    db = out / f"{name}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}  # default trainer, no broker
    env.update(PNAS_DATABASE_URL=f"sqlite:///{db}", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    if args.trainer == "instant":
        env["PNAS_TRAINER"] = "tests.fakes:instant_trainer"
    cmd = search_cmd(args, arm, seed, extra)
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "a") as log:
        log.write(f"$ {' '.join(cmd[2:])}\n")
        log.flush()
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        sys.exit(f"`{' '.join(cmd[2:])}` failed ({res.returncode}); see {out / f'{name}.log'}")
    print(f"  {arm.name} seed {seed}: done in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return db


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


def arms_of(args) -> list[Arm]:
    """--arms as given, or every strategy at every --fidelity (a strategy alone at full
    fidelity keeps its plain name, so the runs of earlier versions are reused)."""
    if args.arms:
        return parse_arms(args.arms)
    fids = [f.strip() for f in args.fidelity.split(",") if f.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if fids == ["full"]:
        return parse_arms(",".join(strategies))
    return parse_arms(",".join(f"{s}-{f}" for s in strategies for f in fids if not (s == "evolution" and f == "asha")))


def seed_figures(args, arms: list[Arm], seed: int, out: Path) -> dict[str, dict]:
    """Every arm's run of one seed (finished runs reused), derived arms after their sources."""
    done: dict[str, dict] = {}
    plain = [a for a in arms if not a.needs]
    if not args.arms and seed % 2:
        plain = plain[::-1]  # spread drift in the load over the strategies (--arms: in the order given)
    for arm in plain + [a for a in arms if a.needs]:
        extra, why = derived_flags(arm, done, beam=args.beam, blocks=args.blocks, fixed_max_params=args.max_params,
                                   same_epochs_beam=args.same_epochs_beam) if arm.needs or arm.max_params else ([], "")  # fmt: skip
        if why:
            print(f"  {arm.name} seed {seed}: {why}", flush=True)
        db = run_search(args, arm, seed, out, extra)
        done[arm.name] = {"seed": seed, "setting": why, **read_run(db, f"{arm.name}-s{seed}", epochs=args.epochs)}
    budget = args.max_params or next((d["max_params"] for d in done.values() if d["max_params"]), None)
    ref = args.hv_ref_params or max(d["space_max_params"][0] for d in done.values())
    for name, d in done.items():
        d["budget"] = budget
        fits = [a for a, p in d["front_points"] if budget is not None and p <= budget]
        d["best_within_budget"] = max(fits) if fits else None
        d["hv_ref_params"] = ref
        acc, params = zip(*d["front_points"])
        d["hypervolume"] = hypervolume_2d(acc, params, ref_cost=ref) / ref  # normalised: 1 = accuracy 1 at 0 params
        ex = d["spearman_extrapolation"]
        print(f"seed {seed} {name}: "
              f"child-epochs {d['child_epochs']} (full fidelity {d['child_epochs_full_fidelity']}), "
              f"{d['children_full']}/{d['children']} children to {args.epochs} epochs, top-5 {d['top5']:.4f}, "
              f"top-1 {d['top1']:.4f}, best within {budget} params {d['best_within_budget'] if d['best_within_budget'] is None else round(d['best_within_budget'], 4)}, "
              f"hypervolume {d['hypervolume']:.4f}, Spearman extrapolation "
              + ", ".join(f"b={b} {v:.2f}" if v is not None else f"b={b} n/a" for b, v in sorted(ex.items())), flush=True)  # fmt: skip
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=_seeds, default=_seeds("3"),
                    help="N: seeds 0..N-1, one run per arm each; or a comma-separated list, run in its order (one seed: 0,)")
    ap.add_argument("--blocks", "-B", type=int, default=3)
    ap.add_argument("--beam", "-K", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per child (the full fidelity)")
    ap.add_argument("--ops", default="sep3x3,max3x3,identity", help="comma-separated, or 'paper' for the 8 of the paper")
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--n", type=int, default=1, help="cells per stage")
    ap.add_argument("--lookback", type=int, default=2, help="2 = H[c-1] and H[c-2] (paper); 1 = H[c-1] only")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes per search")
    ap.add_argument("--predictor", default="lstm", help="lstm (the paper's) or mlp")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, from pnas, random, evolution")
    ap.add_argument("--fidelity", default="full", help="full, asha or full,asha: every strategy at each (no --arms)")
    ap.add_argument("--min-epochs", type=int, default=1, help="asha: r, the first rung")
    ap.add_argument("--reduction-factor", type=int, default=3, help="asha: eta")
    ap.add_argument("--arms", help="instead of --strategies x --fidelity: STRATEGY[-full|-asha][-sameepochs][-maxparams]"
                                    "[-pareto], comma-separated (see bench/_arms.py)")  # fmt: skip
    ap.add_argument("--max-params", type=int, help="the maxparams arms' budget (default: the median params of the "
                                                     "seed's STRATEGY-full level-2 children)")  # fmt: skip
    ap.add_argument("--same-epochs-beam", type=int, help="the sameepochs arms' K (default: from the seed's full and asha runs)")
    ap.add_argument("--hv-ref-params", type=int,
                    help="the hypervolume's reference params (default: the space's largest network of B blocks)")
    ap.add_argument("--trainer", choices=("real", "instant"), default="real",
                    help="real: train on digits; instant: the tests' synthetic reward (seconds, no data)")
    ap.add_argument("--out", type=Path, help="folder for the SQLite files, logs and the PNG (default: a new temporary one)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 seeds, 2 operators, B=2, K=2, 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.ops, args.blocks, args.beam, args.epochs = [0, 1], "sep3x3,max3x3", 2, 2, 1
    if args.ops == "paper":
        args.ops = PAPER_OPS
    arms = arms_of(args)
    out = args.out or Path(tempfile.mkdtemp(prefix="pnas-bench-quality-"))
    out.mkdir(parents=True, exist_ok=True)
    each = " ".join(search_cmd(args, Arm("ARM", "STRATEGY", "full"), 0)[2:]).replace("-s0", "-sSEED").replace("--seed 0", "--seed SEED")
    print(f"arms {', '.join(a.name for a in arms)}; runs in {out}; each: {each} (+ the arm's flags); trainer {args.trainer}", flush=True)

    rows: dict[str, list[dict]] = {a.name: [] for a in arms}
    path = out / "results.json"  # every arm and seed measured in --out so far (several invocations)
    for seed in args.seeds:
        for name, figures in seed_figures(args, arms, seed, out).items():
            rows[name].append(figures)
        kept = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
        for name, xs in rows.items():
            seeds = {x["seed"] for x in xs}
            kept[name] = sorted([x for x in kept.get(name, []) if x["seed"] not in seeds] + xs, key=lambda x: x["seed"])
        path.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": kept}, indent=1))
    report(args, arms, rows, out)


def report(args, arms: list[Arm], rows: dict[str, list[dict]], out: Path) -> None:
    data = "digits" if args.trainer == "real" else "the instant trainer's synthetic reward (no data)"
    title = f"{data}, {len(args.ops.split(','))} ops, B={args.blocks} K={args.beam}, {args.epochs} epoch(s), {len(args.seeds)} seeds"
    png = out / "best_so_far.png"
    plot(rows, png, title, "best validation accuracy so far" if args.trainer == "real" else "best reward so far")
    print(f"best so far (children trained to the full epochs) against children trained: {png}")
    for a in arms:
        xs = rows[a.name]
        n = min(len(x["best_so_far"]) for x in xs)
        marks = ", ".join(f"{k}: {ms([x['best_so_far'][k - 1] for x in xs])}" for k in sorted({n // 4, n // 2, n}) if k)
        print(
            f"{a.name:9}: top-5 {ms([x['top5'] for x in xs])}, top-1 {ms([x['top1'] for x in xs])}, "
            f"top-5 of levels>=2 {ms([x['top5_chosen'] for x in xs])}, last level mean {ms([x['last_level_mean'] for x in xs])}, "
            f"child-epochs {ms([x['child_epochs'] for x in xs], '.0f')} (full fidelity {ms([x['child_epochs_full_fidelity'] for x in xs], '.0f')}), "
            f"hypervolume {ms([x['hypervolume'] for x in xs])}, best within budget {ms([x['best_within_budget'] for x in xs])}, "
            f"{xs[0]['children']} children, {ms([x['minutes'] for x in xs], '.1f')} min per search; best so far after {marks}"
        )  # fmt: skip
        if a.strategy != "evolution":
            dup = [f"b={b} {statistics.mean(x['candidates'][b][0] for x in xs):,.0f} candidates, "
                   f"{statistics.mean((x['candidates'][b][1] or 0) for x in xs):,.0f} new distinct networks"
                   for b in range(2, args.blocks + 1) if all(b in x["candidates"] for x in xs)]  # fmt: skip
            print(f"{'':9}  duplicates (mean over seeds): " + "; ".join(dup))
        if a.strategy == "pnas":
            rho = []
            for b in range(1, args.blocks + 1):
                ex = ms([x["spearman_extrapolation"].get(b) for x in xs], ".2f")
                ins = ms([x["spearman_insample"].get(b) for x in xs], ".2f")
                rho.append(f"b={b} extrapolation {ex} in-sample {ins}")
            print(f"{'':9}  predictor Spearman (mean±std over seeds): " + "; ".join(rho))
    base = rows[arms[0].name]
    paired = "; ".join(
        f"{arms[0].name} - {a.name} top-5 {ms([p['top5'] - o['top5'] for p, o in zip(base, rows[a.name])], '+.4f')}"
        for a in arms[1:]
    )  # fmt: skip
    print(
        f"summary: {title}, mean of top-5 val acc (children trained to the full epochs) "
        + ", ".join(f"{a.name} {ms([x['top5'] for x in rows[a.name]])}" for a in arms)
        + (f" (paired: {paired})" if paired else "") + f"; {machine()}"
    )


if __name__ == "__main__":
    main()
