"""What `pnas search` says once a run has finished: how far to trust its predictor, and what
to type next, with the run's own name."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import TYPE_CHECKING

from pnas.predictor_quality import spearman_critical, spearman_words
from shared.jobs import JobState

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store


def predictor_lines(store: Store, run: RunView) -> list[str]:
    """Per level after the first, the predictor's Spearman on the children it chose, in words
    (`pnas.predictor_quality`); a PNAS run only (the other strategies choose without it)."""
    if (run.config or {}).get("strategy", "pnas") != "pnas":
        return []
    lines, chance = [], []
    for lv in store.levels(run.id):
        if lv.b < 2:
            continue  # level 1 trains every one-block cell: nothing was predicted
        n = sum(j.predicted is not None for j in store.jobs(run.id, level=lv.b, states=[JobState.succeeded.value]))
        lines.append(f"  level {lv.b}: {spearman_words(lv.spearman_extrapolation, n)}")
        crit = spearman_critical(n)
        if lv.spearman_extrapolation is None or crit is None or lv.spearman_extrapolation < crit:
            chance.append(lv.b)
    if not lines:
        return []
    out = ["the predictor's ranking of the children it chose (Spearman against their measured accuracy):", *lines]
    if chance:
        beam = (run.config or {}).get("beam")
        out.append(
            f"  at level{'s' if len(chance) > 1 else ''} {', '.join(map(str, chance))} the predictor did no better than "
            f"a guess could by luck{f' with K={beam}' if beam else ''}: the top cells rest on the children trained, not "
            "on its choice (a larger --beam gives it a fairer test; `pnas plot` compares a random search's run)"
        )
    return out


def _program() -> str:
    """`pnas` as the person can type it: on the PATH, else the path they ran."""
    if shutil.which("pnas"):
        return "pnas"
    argv0 = sys.argv[0]
    return os.path.relpath(argv0) if os.path.basename(argv0) == "pnas" else "pnas"


def next_steps(run: RunView, *, broker: bool) -> list[str]:
    """The commands to look at the run and use its best cell, with its name as typed."""
    p, name = _program(), shlex.quote(run.name)
    final = f"{p} final {name} --rank 1" + ("" if broker else " --run-now")
    rows = [
        (f"{p} top {name}", "the leaderboard"),
        (f"{p} status {name}", "per level: children, best, Spearman, time"),
        (f"{p} dashboard", "the runs, children and curves in a browser"),
        (f"{p} export {name} --rank 1 --out best/", "the best cell: JSON, Keras model, diagram"),
        (final, "train the best cell at full size" + ("" if broker else " in this process")),
    ]
    width = max(len(cmd) for cmd, _ in rows)
    return [f"next (run {run.name!r}):", *[f"  {cmd:<{width}}  # {what}" for cmd, what in rows]]


def closing_lines(store: Store, run: RunView, *, broker: bool) -> list[str]:
    return [*predictor_lines(store, run), *next_steps(run, broker=broker)]
