"""The arms of `bench/search_quality.py`: a strategy and how its runs are set, and the figures
read back from a finished run.

An arm is ``STRATEGY[-TOKEN...]``, the tokens from:

- ``full`` / ``asha``: the fidelity (`pnas search --fidelity`; full when neither is given);
- ``sameepochs``: asha with K raised until it spends about the child-epochs of the same
  seed's ``STRATEGY-full`` run (derived from that run and the seed's ``STRATEGY-asha`` run, or
  ``--same-epochs-beam``);
- ``maxparams``: ``--max-params`` at the median params of the level-2 children of the seed's
  ``STRATEGY-full`` run (or the fixed ``--max-params``);
- ``pareto``: ``--objective pareto --cost params``.

So ``pnas-full,pnas-asha,pnas-asha-sameepochs,pnas-maxparams,pnas-pareto,random`` are six
arms; the derived ones run after the runs they are derived from (added when not listed).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

STRATEGIES = ("pnas", "random", "evolution")
TOKENS = ("full", "asha", "sameepochs", "maxparams", "pareto")


@dataclass(frozen=True)
class Arm:
    name: str
    strategy: str
    fidelity: str  # "full" or "asha"
    same_epochs: bool = False
    max_params: bool = False
    pareto: bool = False

    @property
    def needs(self) -> list[str]:
        """The arms whose runs of the same seed this arm's setting is derived from."""
        if self.same_epochs:
            return [f"{self.strategy}-full", f"{self.strategy}-asha"]
        if self.max_params:
            return [f"{self.strategy}-full"]
        return []


def parse_arm(text: str) -> Arm:
    strategy, *tokens = text.strip().split("-")
    bad = [t for t in tokens if t not in TOKENS]
    if strategy not in STRATEGIES or bad or len(set(tokens)) != len(tokens):
        raise ValueError(f"arm {text!r}: STRATEGY[-TOKEN...] with STRATEGY in {STRATEGIES} and tokens from {TOKENS}")
    if "full" in tokens and ("asha" in tokens or "sameepochs" in tokens):
        raise ValueError(f"arm {text!r}: full and asha are two fidelities")
    fidelity = "asha" if "asha" in tokens or "sameepochs" in tokens else "full"
    if fidelity == "asha" and strategy == "evolution":
        raise ValueError(f"arm {text!r}: evolution needs every child's full reward (no asha)")
    return Arm(text.strip(), strategy, fidelity, "sameepochs" in tokens, "maxparams" in tokens, "pareto" in tokens)


def parse_arms(text: str) -> list[Arm]:
    """The arms in run order: every arm after those it is derived from (added when missing)."""
    arms: list[Arm] = []
    for name in (t for t in text.split(",") if t.strip()):
        arm = parse_arm(name)
        for dep in arm.needs:
            if all(a.name != dep for a in arms):
                arms.append(parse_arm(dep))
        if all(a.name != arm.name for a in arms):
            arms.append(arm)
    return arms


def full_epochs_children(jobs: list, epochs: int) -> list:
    """Succeeded children trained to the full epochs (a multi-fidelity run stops some early)."""
    return [j for j in jobs if j.state == "succeeded" and (j.epochs_trained is None or j.epochs_trained >= epochs)]


def read_run(db: Path, name: str, *, epochs: int) -> dict:
    """The figures of one finished run, read from its SQLite file through the store."""
    from bench.hypervolume import space_max_params
    from shared.budget import cell_costs, cost_spec
    from shared.config import SearchConfig
    from shared.store import Store

    store = Store(f"sqlite:///{db}")
    try:
        run = store.require_run(name)
        if run.state != "finished":
            raise SystemExit(f"run {name} in {db} is {run.state}, not finished")
        jobs = [j for j in store.jobs(run.id) if j.kind == "search"]  # job id order: the order chosen
        levels = store.levels(run.id)
        spent = store.child_epochs(run.id)
        cfg = SearchConfig.model_validate(store.run_config(run.id))
    finally:
        store.dispose()
    ok = [j for j in jobs if j.state == "succeeded"]
    params = {j.id: cell_costs(j.cell, cfg.train)[0] for j in ok}  # exact (BENCHMARKS 16); a fake trainer's own is not
    full = full_epochs_children(ok, epochs)
    acc = sorted((j.reward for j in full), reverse=True)
    chosen = sorted((j.reward for j in full if j.level >= 2), reverse=True)
    last_level = max(j.level for j in ok)
    full_ids = {j.id for j in full}
    best, curve = 0.0, []
    for j in jobs:
        if j.id in full_ids:
            best = max(best, j.reward or 0.0)
        curve.append(best)
    started = min(lv.started_at for lv in levels)
    finished = max(lv.finished_at for lv in levels if lv.finished_at)
    per_level: dict[int, int] = {}
    for j in jobs:  # as `Store.child_epochs`: every child's epochs once, whatever its state
        per_level[j.level] = per_level.get(j.level, 0) + (j.epochs_trained or 0)
    return {
        "children": len(ok),
        "children_full": len(full),
        "beam": cfg.beam,
        "max_params": cfg.max_params,
        "child_epochs": spent["spent"],
        "child_epochs_full_fidelity": spent["full_fidelity"],
        "child_epochs_per_level": per_level,
        "top1": acc[0],
        "top5": statistics.mean(acc[:5]),
        "top5_chosen": statistics.mean(chosen[:5]) if chosen else None,
        "last_level_mean": statistics.mean(j.reward for j in full if j.level == last_level)
        if any(j.level == last_level for j in full)
        else None,
        "minutes": (finished - started).total_seconds() / 60,
        "best_so_far": curve,
        "candidates": {lv.b: (lv.candidates, lv.distinct_candidates) for lv in levels},
        "spearman_extrapolation": {lv.b: lv.spearman_extrapolation for lv in levels},
        "spearman_insample": {lv.b: lv.spearman_insample for lv in levels},
        "level2_median_params": statistics.median(params[j.id] for j in ok if j.level == 2)
        if any(j.level == 2 for j in ok)
        else None,
        "front_points": [(j.reward, params[j.id]) for j in full],  # (accuracy, params), full epochs
        "max_trained_params": max(params.values()),
        "space_max_params": space_max_params(cfg.ops, cfg.blocks, cost_spec(cfg), lookback=cfg.lookback),
    }


def derived_flags(arm: Arm, done: dict[str, dict], *, beam: int, blocks: int, fixed_max_params: int | None,
                  same_epochs_beam: int | None) -> tuple[list[str], str]:  # fmt: skip
    """The `pnas search` flags of an arm whose setting comes from other runs of the seed
    (``done``: arm name -> `read_run` figures), and a line saying how they were chosen."""
    flags, why = [], []
    if arm.max_params:
        n = fixed_max_params
        if n is None:
            n = int(done[f"{arm.strategy}-full"]["level2_median_params"])
            why.append(f"max_params {n:,} = median params of {arm.strategy}-full's level-2 children")
        else:
            why.append(f"max_params {n:,} (--max-params)")
        flags += ["--max-params", str(n)]
    if arm.same_epochs:
        k = same_epochs_beam
        if k is None:
            full, asha = done[f"{arm.strategy}-full"], done[f"{arm.strategy}-asha"]
            later = {b: e for b, e in asha["child_epochs_per_level"].items() if b >= 2}
            per_child = sum(later.values()) / max(1, beam * len(later))  # asha's epochs per child at b >= 2
            k = beam + round((full["child_epochs"] - asha["child_epochs"]) / max(1e-9, per_child * (blocks - 1)))
            why.append(f"K {k} = {beam} + ({full['child_epochs']} - {asha['child_epochs']}) child-epochs "
                       f"/ ({per_child:.2f} asha epochs per child at b>=2 x {blocks - 1} levels)")  # fmt: skip
        else:
            why.append(f"K {k} (--same-epochs-beam)")
        flags += ["--beam", str(max(beam, k))]
    return flags, "; ".join(why)
