"""The progressive search (Algorithm 1 of Liu et al. 2018), resumable from the store alone.

For b = 1: train every one-block cell, fit the surrogate. For b = 2..B: expand the cells
trained at b-1 by every possible block, score all candidates with the surrogate, train the
top K, refit the surrogate on everything so far. The `random` strategy picks the K at random
from the same expansion instead, and `evolution` runs regularized evolution in generations
(`controller.evolution`): baselines at the same budget, for comparison.

Everything the loop needs is rebuilt from the store on every start: the level, the beam
(the children that succeeded at b-1), the predictor (its weights are stored with each level)
and the seed. A controller killed at any moment and started again continues where the
store says it is; job inserts are idempotent, and a job is only trained once it is claimed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
from sqlalchemy.exc import DBAPIError, OperationalError

from controller import evolution
from controller.choice import Chooser
from controller.executors import Executor
from controller.fidelity import Promoter, predicted_and_measured
from controller.progress import LevelClock, Reporter, SilentReporter
from controller.refit import refit
from controller.run_lock import RunLock, new_owner
from shared.config import SearchConfig
from shared.errors import SearchAborted, SearchCancelled, UserError
from shared.jobs import JobState, JobView, LevelState, LevelView, RunState, RunView, finite_or_none
from shared.settings import Settings
from shared.space import SearchSpace
from shared.space.cost import known_dataset_spec
from shared.store import Store


@dataclass
class Controller:
    """Runs one search to its end over a store and an executor (see the module docstring)."""

    store: Store
    executor: Executor
    settings: Settings
    reporter: Reporter = field(default_factory=SilentReporter)
    owner: str = field(default_factory=new_owner)
    # (input shape, classes) of a dataset, for the costs; the `pnas` command passes the worker's
    dataset_spec: Callable = known_dataset_spec
    # Hooks for tests: called after named steps, e.g. to kill the process at that moment.
    hook: Callable[[str, int], None] | None = None
    promoter: Promoter | None = None  # multi-fidelity promotions (`controller.fidelity`), per run

    # --- entry ---------------------------------------------------------------------------
    def open_run(self, *, name: str, config: SearchConfig) -> RunView:
        """Create the run, or find it and check the settings match (after the executor: no run behind a dead broker)."""
        self.executor.ready()
        run, created = self.store.create_run(name=name, config=config.model_dump(mode="json"), seed=config.seed)
        if not created:
            stored = SearchConfig.from_json(run.config)
            if stored != config:
                diff = _first_difference(stored.model_dump(mode="json"), config.model_dump(mode="json"))
                raise UserError(
                    f"run {name!r} already exists with different settings ({diff}); run it again with the "
                    "same settings to resume it, or pick a new --name"
                )
        return run

    def run(self, run: RunView) -> RunView:
        self._lock = RunLock(self.store, run, self.owner)
        self._lock.acquire()
        self.store.set_run_state(run.id, RunState.running, message="")
        try:
            # A resume after `pnas cancel` (or an abort): what was cancelled is trained after all.
            requeued = self.store.requeue_cancelled(run.id, max_attempts=self.settings.max_attempts)
            if requeued:
                self.reporter.message(f"requeued {len(requeued)} cancelled child(ren)")
            self.executor.start(run.id)
            self._search(run)
            # `pnas retry` may have requeued children of a level this loop had passed.
            while self._pending(run):
                self._search(run)
        except KeyboardInterrupt:
            self.store.set_run_state(run.id, RunState.stopped, message="interrupted; run the same command to resume")
            raise
        except SearchCancelled as exc:
            self.store.set_run_state(run.id, RunState.cancelled, message=str(exc))
            raise
        except SearchAborted as exc:
            # In one step: no child of an aborted run trains any more (queued ones are
            # cancelled, running ones asked to stop); a resume requeues them.
            stopped = self.store.abort_run(run.id, message=str(exc))
            if stopped.cancelled or stopped.stopping:
                self.reporter.message(
                    f"cancelled {len(stopped.cancelled)} queued child(ren); asked {len(stopped.stopping)} running to stop"
                )
            raise
        except BaseException as exc:
            try:
                self.store.set_run_state(run.id, RunState.stopped, message=f"{type(exc).__name__}: {exc}")
            except Exception:
                pass
            raise
        finally:
            self._lock.stop_renewing()
            self.executor.stop()
            try:
                self._lock.release()
            except Exception:
                pass
        self.store.set_run_state(run.id, RunState.finished, message="")
        return self.store.require_run(run.id)

    # --- the loop ------------------------------------------------------------------------
    def _search(self, run: RunView) -> None:
        cfg = SearchConfig.from_json(run.config)
        space = cfg.space()
        for b in range(1, evolution.level_count(cfg) + 1):  # evolution: its generations
            level = self.store.get_level(run.id, b)
            if level is not None and level.state == LevelState.done and not self._reopened(run, level):
                continue
            job_ids = self.store.job_ids(run.id, level=b)
            resumed = bool(job_ids)
            if not job_ids:
                job_ids, candidates = self._choose(run, cfg, space, b)
            else:
                candidates = level.candidates if level else len(job_ids)
            self.reporter.level_started(b, total=len(job_ids), candidates=candidates, resumed=resumed)
            self._step("chosen", b)
            self._wait(run, b)
            self._step("trained", b)
            summary = self._finish_level(run, cfg, space, b)
            self.reporter.level_done(b, summary=summary)
            self._step("refit", b)

    def _reopened(self, run: RunView, level: LevelView) -> bool:
        """A done level to wait on again: `pnas retry` requeued some of its children, or one
        of them finished after the level did (trained while no controller was running)."""
        waiting = (JobState.queued, JobState.running)
        return any(
            j.state in waiting
            or (j.state == JobState.lost and j.attempts < j.max_attempts)
            or (level.finished_at and j.finished_at and j.finished_at > level.finished_at)
            for j in self.store.jobs(run.id, level=level.b)
        )

    def _choose(self, run: RunView, cfg: SearchConfig, space: SearchSpace, b: int) -> tuple[list[int], int]:
        """Pick the children of level b and insert their jobs (`controller.choice`)."""
        chooser = Chooser(self.store, self.reporter, max_attempts=self.settings.max_attempts, step=self._step,
                          dataset_spec=self.dataset_spec)
        return chooser.choose(run, cfg, space, b)

    def _wait(self, run: RunView, b: int) -> None:
        """Until every child of level b is terminal, reading the store (one aggregate a poll),
        and no child is due a promotion to its next rung (`controller.fidelity`)."""
        if self.promoter is None:
            self.promoter = Promoter(self.store, SearchConfig.from_json(run.config))
        queued = self.store.job_ids(run.id, level=b, states=[JobState.queued])
        if queued:
            self.executor.submit(queued)
        clock, delay, last_reconcile = LevelClock(b), 0.05, time.monotonic()
        outage: float | None = None  # since when the database has not answered
        while True:
            try:
                self.executor.check()
                self._lock.check()
                if outage is not None:
                    # Workers could not renew their leases while the database was away: give
                    # them a fresh one before sweeping, or every running child would be "lost".
                    self.store.extend_leases(run.id, lease_seconds=self.settings.lease_seconds)
                    self.reporter.message("database back; leases of running children renewed")
                self.store.sweep_expired(run.id)
                requeued = self.store.requeue_lost(run.id)
                if requeued:
                    self.reporter.message(f"requeued {len(requeued)} lost child(ren): {requeued[:10]}")
                    self.executor.submit(requeued)
                p = self.store.level_progress(run.id, b)
                counts = p["counts"]
                self.reporter.progress(clock.progress(p))
                self._check_failures(run)
                drained = counts["queued"] == 0 and counts["running"] == 0 and p["requeueable"] == 0
                # after `pnas cancel` nothing is promoted: a child that ended its rung just as the
                # stop came must not queue more training; a resume promotes it
                promoted = [] if counts["cancelled"] else self.promoter.step(
                    run.id, b, succeeded=counts["succeeded"], drained=drained)
                if promoted:
                    self.reporter.message(f"level {b}: {len(promoted)} child(ren) promoted to their next rung")
                    self.executor.submit(promoted)
                    self._step("promoted", b)
                elif drained:
                    if counts["cancelled"]:
                        raise SearchCancelled(
                            f"{counts['cancelled']} child(ren) of level {b} were cancelled; "
                            "run the same command to resume (it requeues them)"
                        )
                    return
                if time.monotonic() - last_reconcile > self.settings.reconcile_seconds:
                    last_reconcile = time.monotonic()
                    still = partial(self.store.job_ids, run.id, level=b, states=[JobState.queued])
                    self.executor.reconcile(still(), recheck=still)  # resends only those still queued after
                outage = None
            except (OperationalError, DBAPIError) as exc:
                # A database restart: keep polling (pool_pre_ping reconnects) for a while.
                if not isinstance(exc, OperationalError) and not exc.connection_invalidated:
                    raise
                if outage is None:
                    outage = time.monotonic()
                    self.reporter.message(f"database unavailable ({type(exc).__name__}); waiting for it")
                elif time.monotonic() - outage > self.settings.db_outage_seconds:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, self.settings.poll_seconds)

    def _check_failures(self, run: RunView) -> None:
        """SearchAborted after too many failures in a row (fewer when workers cannot load the
        dataset: every child would fail the same way)."""
        data_fails = self.store.consecutive_failures(run.id, error_class="dataset")
        if data_fails >= self.settings.max_dataset_failures:
            last = self._last_failure(run, error_class="dataset")
            raise SearchAborted(
                f"{data_fails} children in a row could not load the dataset on their workers"
                + (f" (last: job {last.id}: {last.error_message})" if last else "")
                + ". Make the dataset readable on every worker (PNAS_DATA_DIR, the npz path), then run the search again."
            )
        fails = self.store.consecutive_failures(run.id)
        if fails >= self.settings.max_consecutive_failures:
            last = self._last_failure(run)
            raise SearchAborted(
                f"{fails} children failed in a row; the training code or the configuration is probably broken"
                + (f" (last: job {last.id}: {last.error_message})" if last else "")
                + ". See `pnas status` and `pnas show ID`; fix it, then `pnas retry` and run the search again."
            )

    def _last_failure(self, run: RunView, *, error_class: str | None = None) -> JobView | None:
        """The newest failure (of ``error_class``), in the order `consecutive_failures` counts."""
        failed = [j for j in self.store.jobs(run.id, states=[JobState.failed], kind=None)
                  if error_class is None or j.error_class == error_class]  # fmt: skip
        return max(failed, key=lambda j: (j.finished_at is not None, j.finished_at or 0, j.id), default=None)

    def _finish_level(self, run: RunView, cfg: SearchConfig, space: SearchSpace, b: int) -> dict:
        from controller.predictor import spearman

        jobs = self.store.jobs(run.id, level=b)
        ok = [j for j in jobs if j.state == JobState.succeeded]
        failed = [j for j in jobs if j.state != JobState.succeeded]
        if not ok:
            raise SearchAborted(f"no child of level {b} succeeded ({len(failed)} failed); see `pnas status`")
        extrap = None
        # a succeeded child always has its reward (the store writes them in one update)
        # a multi-fidelity level's best and mean: of the children trained to the full epochs
        full = [j for j in ok if j.epochs_trained is None or j.epochs_trained >= cfg.train.epochs] or ok
        rewards = [j.reward for j in full if j.reward is not None]
        pairs = predicted_and_measured(ok, cfg)
        if len(pairs) >= 3:
            extrap = finite_or_none(spearman([p for p, _ in pairs], [r for _, r in pairs]))
        blob, insample = None, None
        if cfg.strategy == "pnas":
            blob, insample = refit(self.store, self.reporter, run, cfg, space, b)
        self.store.finish_level(
            run.id, b, predictor=blob, spearman_extrapolation=extrap, spearman_insample=insample
        )
        return {
            "succeeded": len(ok),
            "failed": len(failed),
            "best": max(rewards),
            "mean": float(np.mean(rewards)),
            "spearman_extrapolation": extrap,
            "spearman_insample": insample,
        }

    def _pending(self, run: RunView) -> bool:
        """Search children still to wait for (one aggregate over the run)."""
        counts = self.store.state_counts(run.id)
        return any(c["queued"] or c["running"] for c in counts.values())

    def _step(self, what: str, b: int) -> None:
        if self.hook is not None:
            self.hook(what, b)


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            d = _first_difference(va, vb, f"{prefix}{k}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{k}: stored {va!r}, given {vb!r}"
    return ""
