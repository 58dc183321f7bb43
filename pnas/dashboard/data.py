"""Each dashboard page's data as JSON-ready dicts: the pages render them, `/api/` returns them.

Only store reads (`shared.store.browse`, `reports`, `registry`); times are the database's
clock (UTC), so ages and ETAs do not depend on the clock of the machine serving the page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pnas.commands.runs import expected_children
from pnas.dashboard.costs import cost_data
from pnas.dashboard.rungs import rungs_data
from pnas.render import cell_of, iso
from shared.errors import UserError
from shared.jobs import ALL_STATES, JobState, RunState
from shared.progress import Tally, best_words, level_report
from shared.settings import Settings
from shared.store.browse import SORTABLE, ChildrenQuery
from shared.store.registry import worker_state

LIVE_RUN_STATES = (RunState.created.value, RunState.running.value)


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a and b else None


def runs_data(store: Any) -> dict:
    """Every run, newest first: state, level, children done/total, best (as `pnas runs` has
    it: of the children trained to the full epochs, else labelled with its epochs), started,
    last activity."""
    now = store.db_now()
    runs = []
    for row in reversed(store.run_summaries()):
        r, jobs = row["run"], row["jobs"]
        tally = Tally.of(jobs, further=row["further"])  # a promoted child training further stays trained
        last = max((t for t in (r.updated_at, row["last_finished"]) if t), default=None)
        runs.append({
            "id": r.id, "name": r.name, "state": str(r.state), "level": r.level, "message": r.message,
            "strategy": r.config.get("strategy", "pnas"), "dataset": (r.config.get("train") or {}).get("dataset"),
            "children_done": tally.done, "children_trained": tally.trained, "children_failed": tally.failed,
            "children_cancelled": tally.cancelled, "children_total": tally.total,
            "children_expected": expected_children(r.config or {}, row["level_totals"]), "jobs": jobs, "best": row["best"],
            # as `pnas runs` says it: labelled 'at k/N epochs' while no child reached the full epochs
            "best_epochs": row["best_epochs"], "full_epochs": row["full_epochs"],
            "best_words": best_words(row["best"], row["best_epochs"], row["full_epochs"]),
            "started_at": iso(r.created_at), "last_activity": iso(last),
            "idle_seconds": _seconds(last, now),
        })  # fmt: skip
    return {"now": iso(now), "runs": runs}


def _level_rows(store: Any, run: Any, now: datetime) -> list[dict]:
    """Each level's state, progress, elapsed and ETA as `pnas status` has them (`shared.progress`)."""
    progress = store.level_overview(run.id)  # its best is `pnas status`'s: of the children trained to the full epochs
    full = int((run.config.get("train") or {}).get("epochs") or 0)
    further = store.further_counts(run.id)  # promoted after a rung, training further: still trained
    levels = {lv.b: lv for lv in store.levels(run.id)}
    rows = []
    for b in sorted(set(progress) | set(levels)):
        p = progress.get(b, {"states": {st: 0 for st in ALL_STATES}, "total": 0, "best": None, "best_epochs": None, "mean": None,
                             "first_started": None, "last_finished": None, "child_seconds": 0.0})  # fmt: skip
        lv = levels.get(b)
        rep = level_report(
            counts=p["states"], level_state_value=lv.state if lv else None, level_started=lv.started_at if lv else None,
            level_finished=lv.finished_at if lv else None, first_child_started=p["first_started"],
            last_child_finished=p["last_finished"], run_state=run.state, run_stopped_at=run.finished_at or run.updated_at,
            now=now, further=further.get(b, 0),
        )  # fmt: skip
        rows.append({
            "level": b, "state": rep.state, "candidates": lv.candidates if lv else None,
            "distinct_candidates": lv.distinct_candidates if lv else None,
            "states": p["states"], "total": p["total"], "done": rep.tally.trained, "trained": rep.tally.trained, "further": rep.tally.further,
            "failed": rep.tally.failed, "cancelled": rep.tally.cancelled, "progress": rep.progress,
            "best": p["best"], "best_epochs": p["best_epochs"], "best_words": best_words(p["best"], p["best_epochs"], full),
            "mean": p["mean"],
            "spearman_extrapolation": lv.spearman_extrapolation if lv else None,
            "spearman_insample": lv.spearman_insample if lv else None,
            "started_at": iso(rep.started_at), "finished_at": iso(lv.finished_at if lv else None),
            "elapsed_seconds": rep.elapsed_seconds, "eta_seconds": rep.eta_seconds, "child_seconds": p["child_seconds"],
        })  # fmt: skip
    return rows


def _best_so_far(points: list[tuple[int, int, float, float | None, bool]]) -> list[float | None]:
    """After each trained child, the best accuracy of the children trained to the run's full
    epochs so far (None before the first), as `pnas top` ranks: a child a multi-fidelity run
    stopped early counts as trained but never as the best."""
    out: list[float | None] = []
    best = None
    for _, _, acc, _, full in points:
        if full:
            best = acc if best is None else max(best, acc)
        out.append(best)
    return out


def run_data(store: Any, ref: str | int) -> dict:
    """One run's page: its levels (progress by state, candidates, best/mean, Spearman,
    elapsed, ETA), a multi-fidelity run's rungs per level, and the charts' series (best so far
    against the baseline run when there is one, accuracy per level, predicted against
    measured, accuracy against cost with the front)."""
    r = store.get_run(ref)
    if r is None:
        raise LookupError(f"no run {ref!r}")
    now = store.db_now()
    levels = _level_rows(store, r, now)
    points = store.trained_points(r.id)
    baseline = None
    other_id = store.baseline_run(r.id)
    if other_id is not None:
        other = store.get_run(other_id)
        baseline = {"id": other.id, "name": other.name, "strategy": other.config.get("strategy", "pnas"),
                    "best_so_far": _best_so_far(store.trained_points(other.id))}  # fmt: skip
    totals = {st: sum(lv["states"][st] for lv in levels) for st in ALL_STATES}
    tally = Tally.of(totals, further=sum(lv["further"] for lv in levels))
    # [level, predicted, accuracy, trained to the full epochs]: the chart draws early-stopped ones
    # apart in grey (their accuracy is from fewer epochs than the one the prediction is of)
    predicted = [[lv, p, acc, full] for _, lv, acc, p, full in points if p is not None]
    strategy = r.config.get("strategy", "pnas")
    return {
        "now": iso(now),
        "run": {"id": r.id, "name": r.name, "state": str(r.state), "level": r.level, "message": r.message,
                "strategy": r.config.get("strategy", "pnas"), "dataset": (r.config.get("train") or {}).get("dataset"),
                "blocks": r.config.get("blocks"), "beam": r.config.get("beam"), "seed": r.seed,
                "created_at": iso(r.created_at), "updated_at": iso(r.updated_at), "finished_at": iso(r.finished_at),
                "live": str(r.state) in LIVE_RUN_STATES,
                "level_word": level_word(r.config)},  # fmt: skip
        "children": {"states": totals, "total": sum(totals.values()), "done": tally.done, "trained": tally.trained},
        "levels": levels,
        "rungs": rungs_data(store, r),
        "charts": {
            "best_so_far": _best_so_far(points),
            "baseline": baseline,
            # [level, accuracy, trained to the full epochs]: the chart draws early-stopped ones apart
            "accuracy": [[lv, acc, full] for _, lv, acc, _, full in points],
            "full_epochs": (r.config.get("train") or {}).get("epochs"),
            "predicted_vs_measured": predicted,
            "predicted_vs_measured_note": None if predicted else _no_prediction_why(strategy, levels, points),
            "cost": cost_data(store, r.id),
        },
        "finals": finals_data(store, r.id),
    }


def children_query(params: dict[str, str]) -> ChildrenQuery:
    """The children table's query from URL parameters; UserError (HTTP 400) for a bad one."""

    def integer(name: str, default: int | None) -> int | None:
        v = params.get(name)
        if v in (None, ""):
            return default
        try:
            return int(v)
        except ValueError:
            raise UserError(f"{name} must be a whole number, not {v!r}") from None

    sort = params.get("sort") or "accuracy"  # the table answers "which child is best" first
    if sort not in SORTABLE:
        raise UserError(f"sort must be one of {', '.join(SORTABLE)}, not {sort!r}")
    order = params.get("order") or ("desc" if sort == "accuracy" and not params.get("sort") else "asc")
    if order not in ("asc", "desc"):
        raise UserError(f"order must be asc or desc, not {order!r}")
    state = params.get("state") or None
    if state is not None and state not in ALL_STATES:
        raise UserError(f"state must be one of {', '.join(ALL_STATES)}, not {state!r}")
    limit = integer("limit", 100) or 100
    return ChildrenQuery(sort=sort, descending=order == "desc", level=integer("level", None), state=state,
                         text=(params.get("q") or "").strip() or None, offset=max(0, integer("offset", 0) or 0),
                         limit=min(max(1, limit), 1000))  # fmt: skip


def level_word(config: dict) -> str:
    """What a run's levels are: generations for evolution, block levels (b) otherwise."""
    return "generation" if config.get("strategy") == "evolution" else "level"


def children_data(store: Any, run_id: int, query: ChildrenQuery) -> dict:
    total, rows = store.children_page(run_id, query)
    config = store.run_config(run_id)
    for row in rows:
        row["cell"] = cell_of(row["cell_json"]).readable()
        row["finished_at"] = iso(row["finished_at"])
    return {"total": total, "offset": query.offset, "limit": query.limit, "sort": query.sort,
            "order": "desc" if query.descending else "asc", "level": query.level, "state": query.state,
            "q": query.text, "children": rows, "level_word": level_word(config),
            "full_epochs": (config.get("train") or {}).get("epochs")}  # fmt: skip


def child_data(store: Any, job_id: int) -> dict:
    """One child: everything `pnas show --json` prints, plus its epochs grouped by attempt."""
    from pnas.commands.show import collect

    try:
        d = collect(store, job_id)
    except UserError as exc:
        raise LookupError(str(exc)) from None
    attempts: dict[int, list[dict]] = {}
    for e in d["epochs"]:
        attempts.setdefault(e["attempt"], []).append(e)
    d["curves"] = [{"attempt": a, "epochs": es} for a, es in sorted(attempts.items())]
    d["state"] = str(d["state"])
    d["level_word"] = level_word(store.run_config(d["run_id"]))
    d["final"] = _final_source(store, d) if d["kind"] == "final" else None
    d["retryable"] = d["state"] in (JobState.failed.value, JobState.lost.value)
    d["cancellable"] = d["state"] in (JobState.queued.value, JobState.running.value) or (
        d["state"] == JobState.lost.value and d["attempts"] < d["max_attempts"])  # what `Store.cancel` takes
    return d


def workers_data(store: Any, settings: Settings) -> dict:
    """Workers seen by the store: live (heard from within a lease) apart from offline ones."""
    live: list[dict] = []
    offline: list[dict] = []
    for w in store.workers():
        row = {**w, "started_at": iso(w["started_at"]), "last_seen": iso(w["last_seen"]), "stopped_at": iso(w["stopped_at"])}
        (offline if worker_state(w, lease=settings.lease_seconds) == "offline" else live).append(row)
    return {"lease_seconds": settings.lease_seconds, "live": live, "offline": offline}


def _no_prediction_why(strategy: str, levels: list[dict], points: list) -> str:
    """Why the predicted-vs-measured chart has nothing to draw, in words."""
    if strategy == "evolution":
        return "nothing to compare: evolution has no predictor (its children are mutations of tournament winners)"
    if strategy == "random":
        return "nothing to compare: random search picks its children without a predictor"
    if not points:
        return "no trained child yet"
    later = [lv for lv in levels if lv["level"] >= 2 and lv["total"]]
    if not later:
        return ("level 1 has no prediction (it trains one-block cells before any predictor exists); "
                "level 2's children will be chosen and predicted by the predictor fitted on level 1")
    return f"level {later[0]['level']}'s children have predictions; none of them has finished training yet"


def _final_source(store: Any, d: dict) -> dict:
    """A final training's recipe and the search child it retrains (with its rank now)."""
    recipe = (d["train"] or {}).get("recipe") or "the default final size (N=3, F=48, 600 epochs)"
    source = store.children_of_networks(d["run_id"], [d["network_id"]]).get(d["network_id"]) if d["network_id"] else None
    if source is None:  # a run made before network ids: the same cell
        source = next((j for j in store.jobs(d["run_id"], states=[JobState.succeeded.value]) if j.arch_id == d["arch_id"]), None)
    rank = None
    if source is not None and source.reward is not None:
        # as `pnas top` and `pnas final --rank` rank: children trained to the full epochs first
        ranked = [j.id for j in store.top(d["run_id"], k=1_000_000)]
        rank = ranked.index(source.id) + 1 if source.id in ranked else None
    return {"recipe": recipe, "source_job": source.id if source else None, "source_rank": rank,
            "source_accuracy": source.reward if source else None}  # fmt: skip


def finals_data(store: Any, run_id: int) -> list[dict]:
    """The run's final trainings (`pnas final`), newest first, with recipe and where they run."""
    out = []
    for j in reversed(store.jobs(run_id, kind="final")):
        out.append({"id": j.id, "state": str(j.state), "arch_id": j.arch_id, "recipe": (j.train or {}).get("recipe"),
                    "accuracy": j.reward, "test_accuracy": j.test_accuracy, "worker": j.worker, "device": j.device,
                    "attempts": j.attempts, "max_attempts": j.max_attempts, "cell": cell_of(j.cell).readable(),
                    "finished_at": iso(j.finished_at)})  # fmt: skip
    return out
