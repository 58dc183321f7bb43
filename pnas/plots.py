"""The figures of `pnas plot`, each a matplotlib `Figure` built from plain numbers.

`write_plots` reads a run from the store, draws every figure that has data, and saves PNGs
whose text chunks say what they hold (``Title``, ``Panels``), so that a script or a test can
check a file without looking at pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from shared.jobs import RunView

DPI = 100


@dataclass(frozen=True)
class PlotFile:
    name: str  # what it shows, e.g. "accuracy_per_level"
    path: Path
    panels: int  # axes drawn
    width: int  # pixels
    height: int


def accuracy_per_level(rewards: dict[int, list[float]], *, title: str, axis: str = "level b (blocks per cell)",
                       early: dict[int, list[float]] | None = None) -> Figure:
    """Every child's accuracy by level (jittered points over a box), the best marked.
    ``early``: the children a multi-fidelity run stopped early, drawn apart in grey and left
    out of the box and the best (their accuracy is from fewer epochs)."""
    fig = Figure(figsize=(7, 4.5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    levels = sorted(rewards)
    rng = np.random.default_rng(0)
    if levels:
        ax.boxplot([rewards[b] for b in levels], positions=levels, widths=0.5, showfliers=False)
    for b in levels:
        y = np.asarray(rewards[b])
        ax.scatter(b + rng.uniform(-0.18, 0.18, len(y)), y, s=12, alpha=0.6, color="tab:blue")
        ax.scatter([b], [y.max()], marker="*", s=120, color="tab:red", zorder=3)
    for i, (b, ys) in enumerate(sorted((early or {}).items())):
        ax.scatter(b + rng.uniform(-0.18, 0.18, len(ys)), ys, s=12, alpha=0.6, marker="x", color="tab:gray",
                   label=None if i else "stopped early (fewer epochs)")  # fmt: skip
    if early:
        ax.legend(loc="lower right")
    ax.set_xticks(sorted({*levels, *(early or {})}))
    ax.set_xlabel(axis)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def predicted_vs_measured(levels: dict[int, tuple[list[float], list[float], float | None]], *, title: str,
                          early: dict[int, tuple[list[float], list[float]]] | None = None) -> Figure:
    """One panel per level: the surrogate's prediction against the measured accuracy of the
    children it chose, with the Spearman rank correlation in the panel title. ``early``:
    (predicted, measured) of the children a multi-fidelity run stopped early, drawn apart as
    grey crosses and left out of n (their accuracy is from fewer epochs than the prediction's)."""
    early = early or {}
    shown = sorted({*levels, *early})
    n = len(shown)
    fig = Figure(figsize=(4 * n + 0.5, 4.2), dpi=DPI)
    for i, b in enumerate(shown, 1):
        pred, meas, rho = levels.get(b, ([], [], None))
        ep, em = early.get(b, ([], []))
        ax = fig.add_subplot(1, n, i)
        ax.scatter(pred, meas, s=14, alpha=0.7)
        if ep:
            ax.scatter(ep, em, s=14, alpha=0.6, marker="x", color="tab:gray", label="stopped early (fewer epochs)")
            ax.legend(loc="lower right", fontsize=8)
        lo = min(*pred, *meas, *ep, *em)
        hi = max(*pred, *meas, *ep, *em)
        ax.plot([lo, hi], [lo, hi], ls="--", lw=0.8, color="grey")
        rho_s = "n/a" if rho is None else f"{rho:.3f}"
        stopped = f", {len(ep)} stopped early" if ep else ""
        ax.set_title(f"level {b}: Spearman {rho_s} (n={len(pred)}{stopped})", fontsize=10)
        ax.set_xlabel("predicted accuracy")
        if i == 1:
            ax.set_ylabel("measured accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def best_so_far(curves: dict[str, list[float]], *, title: str) -> Figure:
    """Best accuracy so far against the number of children trained, one line per run; a NaN
    reward (a child stopped early: `full_rewards`) counts as trained, never as the best."""
    fig = Figure(figsize=(7, 4.5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    for label, rewards in curves.items():
        y = np.fmax.accumulate(np.asarray(rewards, dtype=float))
        ax.step(np.arange(1, len(y) + 1), y, where="post", label=label)
    ax.set_xlabel("children trained")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


STRATEGY_NAMES = {"pnas": "PNAS", "random": "random search", "evolution": "regularized evolution"}


def strategy_name(run: RunView) -> str:
    strategy = run.config.get("strategy") or "pnas"
    return STRATEGY_NAMES.get(strategy, strategy)


def level_axis(run: RunView) -> str:
    """What a run's levels are: an evolution run's are generations, the others' block counts."""
    return "generation" if run.config.get("strategy") == "evolution" else "level b (blocks per cell)"


def _mean_clipped(values: list[float]) -> tuple[float, float, float]:
    """(mean, error below, error above): mean ± std, the bar clipped to accuracy's [0, 1]."""
    m, sd = float(np.mean(values)), float(np.std(values))
    return m, m - max(0.0, m - sd), min(1.0, m + sd) - m


def comparison(runs: dict[str, tuple[list[float], dict[int, list[float]], str]], *, title: str) -> Figure:
    """Best-so-far against children trained, then mean accuracy per level: one panel per kind
    of level (block levels b, generations), since a generation is not a number of blocks.

    ``runs``: label -> (rewards in training order as `full_rewards`, rewards by level, what
    the levels are)."""
    axes_of = list(dict.fromkeys(axis for _, _, axis in runs.values()))
    fig = Figure(figsize=(5.5 * (1 + len(axes_of)), 4.5), dpi=DPI)
    ax1 = fig.add_subplot(1, 1 + len(axes_of), 1)
    right = {axis: fig.add_subplot(1, 1 + len(axes_of), 2 + i) for i, axis in enumerate(axes_of)}
    for i, (label, (ordered, by_level, axis)) in enumerate(runs.items()):
        colour = f"C{i}"
        y = np.fmax.accumulate(np.asarray(ordered, dtype=float))  # NaN: stopped early (`best_so_far`)
        ax1.step(np.arange(1, len(y) + 1), y, where="post", label=label, color=colour)
        lv = sorted(by_level)
        stats = [_mean_clipped(by_level[b]) for b in lv]
        right[axis].errorbar(lv, [m for m, _, _ in stats], yerr=[[lo for _, lo, _ in stats], [hi for _, _, hi in stats]],
                             marker="o", capsize=3, label=label, color=colour)  # fmt: skip
    ax1.set_xlabel("children trained")
    ax1.set_ylabel("best validation accuracy so far")
    ax1.set_title("best so far")
    for axis, ax in right.items():
        ax.set_xticks(sorted({b for _, by_level, a in runs.values() if a == axis for b in by_level}))
        ax.set_xlabel(axis)
        ax.set_ylabel("mean validation accuracy (± std, within [0, 1])")
        ax.set_title("children per generation" if axis == "generation" else "children per level")
    for ax in (ax1, *right.values()):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def validation_vs_test(points: dict[str, list[tuple[float, float]]], *, title: str) -> Figure:
    """Test accuracy against validation accuracy (the reward), one marker kind per job kind:
    how well the reward the search chose by carries over to held-out test images."""
    fig = Figure(figsize=(6, 5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    lo = min(min(v, t) for pts in points.values() for v, t in pts)
    for (label, pts), marker in zip(points.items(), ("o", "*")):
        ax.scatter([v for v, _ in pts], [t for _, t in pts], marker=marker, s=40 if marker == "o" else 120,
                   alpha=0.7, label=f"{label} ({len(pts)})")  # fmt: skip
    ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("validation accuracy (the reward)")
    ax.set_ylabel("test accuracy (reported only)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def save(fig: Figure, path: Path, *, name: str, title: str) -> PlotFile:
    panels = len(fig.axes)
    fig.savefig(path, dpi=DPI, metadata={"Title": title, "Description": f"pnas plot {name}; panels={panels}"})
    w, h = fig.get_size_inches() * DPI
    return PlotFile(name=name, path=path, panels=panels, width=int(round(w)), height=int(round(h)))


def comparison_run(store, run: RunView) -> RunView | None:
    """The most recent run on the same dataset with another strategy (pnas, random, evolution)
    that has succeeded children; None if there is none."""
    def key(r: RunView) -> tuple:
        return ((r.config.get("train") or {}).get("dataset"), r.config.get("strategy"))

    dataset, strategy = key(run)
    other = [
        row["run"] for row in store.run_summaries()
        if row["run"].id != run.id and key(row["run"])[0] == dataset and key(row["run"])[1] != strategy
        and row["jobs"]["succeeded"] > 0
    ]  # fmt: skip
    return max(other, key=lambda r: (r.updated_at, r.id)) if other else None


def at_full(run: RunView, jobs) -> list[bool]:
    """Per job: its reward is from the run's full epochs, as `pnas top` ranks (a multi-fidelity
    run stops some children early; no epochs recorded: a run from before it)."""
    full = int((run.config.get("train") or {}).get("epochs") or 0)
    return [j.epochs_trained is None or j.epochs_trained >= full for j in jobs]


def full_rewards(run: RunView, jobs) -> list[float]:
    """The rewards in training order, NaN for a child stopped early: a best-so-far curve's data."""
    return [j.reward if f else float("nan") for j, f in zip(jobs, at_full(run, jobs))]


def _by_level(run: RunView, jobs, *, full: bool = True) -> dict[int, list[float]]:
    """The rewards by level of the children trained to the full epochs (``full=False``: of those stopped early)."""
    out: dict[int, list[float]] = {}
    for j, f in zip(jobs, at_full(run, jobs)):
        if f == full:
            out.setdefault(j.level, []).append(j.reward)
    return out


def write_plots(store, run: RunView, out: Path, *, compare: RunView | None = None) -> tuple[list[PlotFile], list[str]]:
    """Draw every figure the run has data for into ``out``. Returns (files, skipped reasons)."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[PlotFile] = []
    skipped: list[str] = []
    trained = store.trained_children(run.id)
    if not trained:
        return files, [f"run {run.name!r} has no succeeded child yet"]
    by_level, early = _by_level(run, trained), _by_level(run, trained, full=False)
    name = f"{run.name} ({run.config.get('strategy')}, {(run.config.get('train') or {}).get('dataset')})"

    t = f"accuracy per {level_axis(run).split(' (')[0]}: {name}"
    files.append(save(accuracy_per_level(by_level, title=t, axis=level_axis(run), early=early), out / "accuracy_per_level.png", name="accuracy_per_level", title=t))

    spearman = {lv.b: lv.spearman_extrapolation for lv in store.levels(run.id)}
    pred: dict[int, tuple[list[float], list[float], float | None]] = {}
    pred_early: dict[int, tuple[list[float], list[float]]] = {}  # stopped early: drawn apart
    for b in sorted({*by_level, *early}):
        pairs = [(j.predicted, j.reward, f) for j, f in zip(trained, at_full(run, trained)) if j.level == b and j.predicted is not None]
        if len(pairs) >= 2:
            p, m = [x for x, _, f in pairs if f], [y for _, y, f in pairs if f]
            rho = spearman.get(b)
            if rho is None and len(p) >= 3:
                from scipy.stats import spearmanr

                r = spearmanr(p, m).statistic
                rho = float(r) if np.isfinite(r) else None
            pred[b] = (p, m, rho)
            if len(p) < len(pairs):
                pred_early[b] = ([x for x, _, f in pairs if not f], [y for _, y, f in pairs if not f])
    if pred:
        t = f"predicted vs measured accuracy: {name}"
        files.append(save(predicted_vs_measured(pred, title=t, early=pred_early), out / "predicted_vs_measured.png",
                          name="predicted_vs_measured", title=t))  # fmt: skip
    else:
        skipped.append("predicted_vs_measured: no level has predictions (a random-search run, or only level 1 done)")

    t = f"best so far: {name}"
    files.append(save(best_so_far({run.name: full_rewards(run, trained)}, title=t), out / "best_so_far.png",
                      name="best_so_far", title=t))  # fmt: skip

    with_test = {
        kind: [(j.reward, j.test_accuracy) for j in jobs if j.test_accuracy is not None]
        for kind, jobs in (("search children", trained), ("final trainings", store.trained_children(run.id, kind="final")))
    }
    with_test = {k: v for k, v in with_test.items() if v}
    if with_test:
        t = f"validation vs test accuracy: {name}"
        files.append(save(validation_vs_test(with_test, title=t), out / "validation_vs_test.png",
                          name="validation_vs_test", title=t))  # fmt: skip
    else:
        skipped.append("validation_vs_test: no job has a test accuracy (evaluate_test = true, or `pnas final`)")

    other = compare or comparison_run(store, run)
    if other is None:
        skipped.append("comparison: no run with another strategy on the same dataset (or name one with --compare)")
    else:
        runs = {}
        for r, jobs in ((run, trained), (other, store.trained_children(other.id))):
            runs[f"{r.name} ({r.config.get('strategy')})"] = (full_rewards(r, jobs), _by_level(r, jobs), level_axis(r))
        t = f"{strategy_name(run)} vs {strategy_name(other)} on {(run.config.get('train') or {}).get('dataset')}"
        if strategy_name(run) == strategy_name(other):
            t = f"{run.name} vs {other.name} ({strategy_name(run)}) on {(run.config.get('train') or {}).get('dataset')}"
        files.append(save(comparison(runs, title=t), out / "comparison.png", name="comparison", title=t))
    return files, skipped
