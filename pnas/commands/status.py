"""`pnas status [RUN] [--json] [--watch]`: per level, candidates scored, children by state,
best and mean accuracy, predictor Spearman, elapsed time and ETA; the workers seen with
their last heartbeat; a multi-fidelity run's child-epochs spent against what full fidelity
would have spent on the same children.

One aggregate query each for the counts, the level timings and the levels' best rewards;
``--json`` prints one object for scripts (its keys only grow). ``--watch`` redraws every
``--interval`` seconds until the run stops running (with ``--json``, or when stdout is not a
terminal: one object or one line per refresh). A worker that exited, or whose last
heartbeat is older than the lease, is ``offline``: after the live ones, the newest few, the
rest folded into one line. Counts, level states, elapsed times and ETAs are `shared.progress`'s,
as `pnas runs` and the dashboard have them.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from shared.jobs import ALL_STATES, RunState
from shared.progress import Tally, best_words, level_report, run_elapsed, run_eta
from shared.settings import get_settings
from shared.store.registry import worker_state

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store


def collect(store, ref: str | None) -> dict:
    """The status of a run as one JSON-ready dict (UserError if there is no such run)."""
    run = store.require_run(ref)
    counts = store.state_counts(run.id)
    further = store.further_counts(run.id)  # promoted after a rung, training further: still trained
    levels = {lv.b: lv for lv in store.levels(run.id)}
    timing = store.level_timing(run.id)
    bests = store.best_per_level(run.id)  # as the live line, `pnas runs` and the dashboard have it
    full = int((run.config.get("train") or {}).get("epochs", 0))
    now = store.db_now()
    out_levels = []
    stopped_at = run.finished_at or run.updated_at
    for b in sorted(set(counts) | set(levels)):
        lv = levels.get(b)
        jobs = counts.get(b, {st: 0 for st in ALL_STATES})
        tm = timing.get(b, {})
        rep = level_report(
            counts=jobs, level_state_value=lv.state if lv else None, level_started=lv.started_at if lv else None,
            level_finished=lv.finished_at if lv else None, first_child_started=tm.get("first_started"),
            last_child_finished=tm.get("last_finished"), run_state=run.state, run_stopped_at=stopped_at, now=now,
            further=further.get(b, 0),
        )  # fmt: skip
        out_levels.append(
            {
                "b": b,
                "state": rep.state,
                "candidates": lv.candidates if lv else None,
                "jobs": jobs,
                # of the children trained to the full epochs; else of a rung, from best_epochs
                "best": bests.get(b, {}).get("best"),
                "best_epochs": bests.get(b, {}).get("best_epochs"),
                "spearman_extrapolation": lv.spearman_extrapolation if lv else None,
                "spearman_insample": lv.spearman_insample if lv else None,
                "children": rep.tally.total,
                "trained": rep.tally.trained,  # succeeded, or training further after a rung
                "training_further": rep.tally.further,
                "failed": rep.tally.failed,
                "cancelled": rep.tally.cancelled,
                "mean": tm.get("mean"),
                "started_at": _iso(rep.started_at),
                "finished_at": _iso(lv.finished_at) if lv else None,
                "elapsed_seconds": rep.elapsed_seconds,
                "eta_seconds": rep.eta_seconds,
            }
        )
    best = store.best_child(run.id)  # by the level table's rule: a child training further keeps its rung's
    workers = sorted((_worker(w, lease=get_settings().lease_seconds) for w in store.workers()),
                     key=lambda w: (w["state"] == "offline", w["seconds_ago"]))  # fmt: skip
    totals = {st: sum(lv["jobs"][st] for lv in out_levels) for st in ALL_STATES}
    finals = final_progress(store, run)
    last_finished = max((t["last_finished"] for t in timing.values() if t["last_finished"]), default=None)
    progress = _progress(run, out_levels, totals, now, last_finished=last_finished, further=sum(further.values()))
    gpus = per_gpu(workers, live_seconds=get_settings().lease_seconds)
    return {
        "run": run.name,
        "id": run.id,
        "state": run.state,
        "level": run.level,
        "message": run.message,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "finished_at": _iso(run.finished_at),
        "jobs": totals,
        "levels": out_levels,
        # trained to the full epochs first (as `pnas top`), a child training further with its rung's
        # reward; "epochs" says what it is from
        "best": None if best is None else {"job": best.id, "level": best.level, "arch_id": best.arch_id,
                                           "reward": best.reward, "epochs": best.epochs_trained,
                                           "full_epochs": full},  # fmt: skip
        "full_epochs": full,  # a search child's epochs at full fidelity
        "workers": workers,
        "gpus": gpus,
        "finals": finals,
        "checkpoint_bytes": _checkpoint_bytes(store, run.id),
        "child_epochs": store.child_epochs(run.id),  # spent, and what full fidelity would have spent
        **progress,
    }


def _worker(w: dict, *, lease: float) -> dict:
    """One worker for the list, in the state `worker_state` gives it."""
    state = worker_state(w, lease=lease)
    return {
        "name": w["name"],
        "hostname": w["hostname"],
        "device": w["device"],
        "job_id": w["job_id"],
        "last_seen": _iso(w["last_seen"]),
        "stopped_at": _iso(w.get("stopped_at")),
        "seconds_ago": round(w["seconds_ago"], 1),
        "state": state,
    }


def final_progress(store: Store, run: RunView) -> list[dict]:
    """The run's final trainings (`pnas final`): state and how far each is (epoch x of y)."""
    from shared.config import SearchConfig

    base = SearchConfig.from_json(run.config).train.model_dump()
    out = []
    for j in store.jobs(run.id, kind="final"):
        epochs = [e for e in store.epochs(j.id) if e["attempt"] == j.attempts]
        out.append({
            "job": j.id, "arch_id": j.arch_id, "state": j.state, "recipe": j.train.get("recipe"),
            "epoch": max((e["epoch"] for e in epochs), default=0),
            "epochs": int({**base, **j.train}["epochs"]),
            "val_accuracy": epochs[-1]["val_accuracy"] if epochs else None,
            "accuracy": j.reward, "test_accuracy": j.test_accuracy,
        })  # fmt: skip
    return out
def _checkpoint_bytes(store: Store, run_id: int) -> int | None:
    """Space the run's checkpoints take (None: the checkpoint store cannot be read from here)."""
    from shared.settings import get_settings
    from worker.checkpoints import CheckpointStore

    try:
        cs = CheckpointStore.from_settings(get_settings(), database=store.database_identity())
        return cs.size(cs.run_dir(run_id))
    except Exception:  # an unreachable bucket must not break `status`
        return None


def _progress(run: RunView, levels: list[dict], totals: dict, now: datetime, *, last_finished: datetime | None,
              further: int = 0) -> dict:  # fmt: skip
    """Run-wide: candidates scored, children trained of those expected, elapsed and ETA.

    The ETA assumes the remaining children (the levels not chosen yet count K each) take
    as long as the finished ones did on average, predictor fitting included."""
    from shared.config import SearchConfig

    from controller import evolution
    from pnas.commands.runs import expected_children

    cfg = SearchConfig.from_json(run.config)
    expected = expected_children(run.config, {lv["b"]: lv["children"] for lv in levels}) or 0
    tally = Tally.of(totals, further=further)
    elapsed = run_elapsed(created_at=run.created_at, run_state=run.state, stopped_at=run.finished_at or run.updated_at,
                          last_child_finished=last_finished, now=now)  # fmt: skip
    eta = run_eta(run_state=run.state, elapsed=elapsed, tally=tally, expected=expected)
    return {
        "strategy": cfg.strategy,
        "dataset": cfg.train.dataset,
        "blocks": cfg.blocks,
        "level_count": evolution.level_count(cfg),  # B, or an evolution run's generations
        "candidates_scored": sum(lv["candidates"] or 0 for lv in levels),
        "children_trained": tally.trained,  # succeeded, or training further after a rung (multi-fidelity)
        "children_training_further": tally.further,
        "children_failed": tally.failed,  # failed or lost
        "children_cancelled": tally.cancelled,
        "children_expected": expected,
        "elapsed_seconds": elapsed,
        "eta_seconds": eta,
    }


# `pnas worker`'s device labels: "GPU 0 slot 2/4 node n1: NVIDIA H200" on a leased slot,
# "GPU 0: NVIDIA H200" without leasing (then the host names the machine).
_GPU_LABEL = re.compile(r"^GPU (?P<gpu>[\w,]+)(?: slot (?P<slot>\d+)/(?P<k>\d+) node (?P<node>\S+))?: (?P<name>.*)$")


def per_gpu(workers: list[dict], *, live_seconds: float) -> list[dict]:
    """Live workers (heartbeat within ``live_seconds``) per GPU: how many, how many training."""
    groups: dict[tuple[str, str], dict] = {}
    for w in workers:
        m = _GPU_LABEL.match(w["device"] or "")
        if not m or w["seconds_ago"] > live_seconds:
            continue
        node = m["node"] or w["hostname"] or "?"
        g = groups.setdefault(
            (node, m["gpu"]),
            {"node": node, "gpu": m["gpu"], "name": m["name"], "slots": int(m["k"] or 1), "workers": 0, "training": 0},
        )
        g["workers"] += 1
        g["training"] += bool(w["job_id"])
    return [groups[key] for key in sorted(groups)]


OFFLINE_SHOWN = 3  # the newest offline workers listed; each local search leaves its own behind


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def headline(st: dict) -> str:
    """The run in one line: state, level, children trained, candidates scored, elapsed, ETA."""
    from pnas.render import duration

    return (
        f"run {st['run']!r} (id {st['id']}, {st['strategy']} on {st['dataset']}): {st['state']}, level "
        f"{st['level']}/{st['level_count']}; "
        f"{Tally.of(st['jobs'], further=st.get('children_training_further', 0)).words(st['children_expected'])}, "
        f"{st['candidates_scored']:,} candidates scored; elapsed {duration(st['elapsed_seconds'])}"
        + (f", ETA {duration(st['eta_seconds'])}" if st["eta_seconds"] is not None
           else ", ETA ?" if st["state"] == RunState.running.value else "")
    )


def render(st: dict):
    """A rich renderable: a header, the per-level table and the workers."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from pnas.render import duration

    parts: list = [Text(headline(st))]
    if st["message"]:
        parts.append(Text(f"  {st['message']}"))
    t = Table()
    cols = ["level", "state", "scored", *ALL_STATES, "best", "mean", "spearman", "elapsed", "ETA"]
    for col in cols:
        t.add_column(col, justify="left" if col == "state" else "right")
    for lv in st["levels"]:
        t.add_row(
            str(lv["b"]), lv["state"], f"{lv['candidates']:,}" if lv["candidates"] is not None else "-",
            *[str(lv["jobs"][s]) for s in ALL_STATES], best_words(lv["best"], lv.get("best_epochs"), st.get("full_epochs")),
            _f(lv["mean"]),
            _f(lv["spearman_extrapolation"], ".3f"), duration(lv["elapsed_seconds"]),
            duration(lv["eta_seconds"]) if lv["eta_seconds"] is not None else ("?" if lv["state"] == "training" else "-"),
        )  # fmt: skip
    parts.append(t)
    if st["best"]:
        b = st["best"]
        early = ""
        if b.get("epochs") and b["epochs"] < b.get("full_epochs", 0):  # no child trained to the full epochs yet
            early = f" after {b['epochs']} of {b['full_epochs']} epochs (none trained to the full epochs yet)"
        parts.append(Text(f"best: job {b['job']} (level {b['level']}, {b['arch_id']}) accuracy {b['reward']:.4f}{early}"))
    for f in st.get("finals", []):
        recipe = f" ({f['recipe']})" if f["recipe"] else ""
        test = f", test {f['test_accuracy']:.4f}" if f["test_accuracy"] is not None else ""
        parts.append(Text(f"final training job {f['job']}{recipe}: {f['state']}, epoch {f['epoch']} of {f['epochs']}, "
                          f"val accuracy {_f(f['val_accuracy'])}{test}"))
    ce = st.get("child_epochs")
    if ce and ce["full_fidelity"] and ce["spent"] != ce["full_fidelity"]:
        parts.append(Text(f"child-epochs: {ce['spent']:,} spent of the {ce['full_fidelity']:,} full fidelity would have "
                          f"spent on these {ce['children']} children ({ce['spent'] / ce['full_fidelity']:.0%})"))
    if st.get("checkpoint_bytes"):
        parts.append(Text(f"checkpoints: {st['checkpoint_bytes'] / 1e6:.1f} MB (`pnas gc {st['run']}` removes what the run no longer needs)"))
    if st.get("gpus"):
        parts.append(Text("workers per GPU (live): " + "; ".join(
            f"{g['node']} GPU {g['gpu']} ({g['name']}): {g['workers']} of {g['slots']} slots, {g['training']} training"
            for g in st["gpus"])))  # fmt: skip
    live = [w for w in st["workers"] if w["state"] != "offline"]
    offline = [w for w in st["workers"] if w["state"] == "offline"]
    parts.append(Text(f"workers seen ({len(live)} live, {len(offline)} offline):"))
    for w in live + offline[:OFFLINE_SHOWN]:
        job = f"training job {w['job_id']}" if w["state"] == "training" else w["state"]
        heard = "exited" if w.get("stopped_at") else "last heartbeat"
        parts.append(Text(f"  {w['name']:<40} {w['device'] or '?':<28} {heard} {duration(w['seconds_ago'])} ago, {job}"))
    if len(offline) > OFFLINE_SHOWN:
        parts.append(Text(f"  ... and {len(offline) - OFFLINE_SHOWN} more offline, the last heard from "
                          f"{duration(offline[-1]['seconds_ago'])} ago (`pnas status --json` lists every one)"))
    return Group(*parts)


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        run: str = typer.Argument(None, help="Run name or id (default: the most recently updated run)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object (with --watch: one per line)."),
        watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until the run stops running (Ctrl-C to leave)."),
        interval: float = typer.Option(2.0, "--interval", help="Seconds between refreshes with --watch."),
        count: int = typer.Option(None, "--count", help="With --watch: stop after this many refreshes."),
    ) -> None:
        """Per level: scored, children by state, best, Spearman, elapsed, ETA; and the workers."""
        from pnas.render import console
        from shared.errors import UserError
        from shared.store import Store

        if interval <= 0:
            raise UserError(f"--interval must be positive, got {interval}")
        from pnas.render import require_database

        require_database(get_settings().database_url)
        store = Store.from_settings(get_settings())
        store.ensure_schema()
        st = collect(store, run)
        if not watch:
            if as_json:
                print(json.dumps(st))
            else:
                console().print(render(st))
            return
        ref, shown = st["id"], 0
        try:
            if as_json:
                while True:
                    print(json.dumps(st), flush=True)
                    shown += 1
                    if st["state"] != RunState.running.value or (count and shown >= count):
                        return
                    time.sleep(interval)
                    st = collect(store, ref)
            if not sys.stdout.isatty():  # a log or a pipe: one line per refresh, as it comes
                while True:
                    print(headline(st), flush=True)
                    shown += 1
                    if st["state"] != RunState.running.value or (count and shown >= count):
                        return
                    time.sleep(interval)
                    st = collect(store, ref)
            from rich.live import Live

            with Live(render(st), console=console(), auto_refresh=False) as live:
                while True:
                    shown += 1
                    if st["state"] != RunState.running.value or (count and shown >= count):
                        return
                    time.sleep(interval)
                    st = collect(store, ref)
                    live.update(render(st), refresh=True)
        except KeyboardInterrupt:
            return
