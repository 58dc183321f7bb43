"""The predictor's refit after a level: on every child trained so far, or fine-tuned from
the previous level's ensemble (`SearchConfig.predictor_update`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from controller.progress import FitProgress, Reporter
from shared.config import SearchConfig
from shared.jobs import RunView, finite_or_none
from shared.space import Cell, SearchSpace
from shared.store import Store

if TYPE_CHECKING:
    from controller.predictor import Ensemble


def refit(store: Store, reporter: Reporter, run: RunView, cfg: SearchConfig, space: SearchSpace, b: int) -> tuple[bytes, float | None]:
    """Fit (or fine-tune) the ensemble on every succeeded child up to level b.

    Returns the ensemble as bytes and its in-sample Spearman (None under 3 children)."""
    from controller.predictor import finetune_epochs, fit_ensemble, spearman

    rows = store.rewards(run.id, max_level=b)
    by_level: dict[int, list] = {}
    for lv, cell, reward in rows:
        by_level.setdefault(lv, []).append((cell, reward))
    batches, rewards = [], []
    for lv in sorted(by_level):
        cells = [Cell.from_json(c, space.ops) for c, _ in by_level[lv]]
        batches.append(space.batch(cells))
        rewards.append(np.array([r for _, r in by_level[lv]], dtype=np.float32))
    # finetune: on every child so far (the earlier ones keep what the predictor knew)
    rows_before = sum(lv < b for lv, _, _ in rows)
    init = previous_predictor(store, reporter, run, b, rows_before) if cfg.predictor_update == "finetune" else None
    epochs = cfg.predictor_epochs if init is None else finetune_epochs(cfg.predictor_epochs)
    how = "fitting the" if init is None else f"fine-tuning level {b - 1}'s"
    reporter.message(f"level {b}: {how} {cfg.predictor} predictor ensemble on {len(rows)} children")
    t0, first = time.monotonic(), [0.0]

    def on_epoch(epoch: int, loss: float) -> None:
        now = time.monotonic()
        if epoch == 1:
            first[0] = now
        reporter.fit_progress(FitProgress(b, cfg.ensemble, epoch, epochs, len(rows), loss, now - t0, now - first[0]))

    ens = fit_ensemble(
        space,
        batches,
        np.concatenate(rewards),
        kind=cfg.predictor,
        members=cfg.ensemble,
        epochs=epochs,
        seed=run.seed * 1000 + b,
        first_level=(b == 1),
        on_epoch=on_epoch,
        init=init,
    )
    pred = np.concatenate([ens.predict(x) for x in batches])
    insample = finite_or_none(spearman(pred, np.concatenate(rewards))) if len(pred) >= 3 else None
    return ens.to_bytes(), insample


def previous_predictor(store: Store, reporter: Reporter, run: RunView, b: int, rows_before: int) -> Ensemble | None:
    """Level b-1's predictor to fine-tune at level b, if it was fitted on exactly the children
    before level b (else None: a refit; `pnas retry` may have added children since)."""
    from controller.predictor import Ensemble

    stored = store.latest_predictor(run.id) if b > 1 else None
    ens = Ensemble.from_bytes(stored[1]) if stored is not None and stored[0] == b - 1 else None
    if b > 1 and (ens is None or ens.info.get("rows") != rows_before):
        reporter.message(f"level {b}: level {b - 1}'s predictor is not the newest or saw other children; refitting")
        return None
    return ens
