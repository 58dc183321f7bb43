"""`pnas search`: run (or resume) a progressive search on the embedded default or Celery."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from shared.config import SearchConfig, build_config, read_config_file
from shared.errors import SearchAborted, SearchCancelled, UserError
from shared.progress import best_words
from shared.settings import get_settings

if TYPE_CHECKING:
    from shared.jobs import RunView
    from shared.store import Store

console = Console(stderr=True, soft_wrap=True)


def executor_kind(kind: str | None) -> str:
    """local or celery: the flag, else celery when PNAS_BROKER_URL is set."""
    kind = kind or ("celery" if get_settings().broker_url else "local")
    if kind not in ("local", "celery"):
        raise UserError(f"unknown executor {kind!r}; choose local or celery")
    return kind


def make_executor(kind: str | None, *, workers: int):
    """The composition root's one decision: which executor hands children out."""
    settings = get_settings()
    kind = executor_kind(kind)
    if kind == "local":
        from controller.executors import LocalExecutor

        return LocalExecutor(workers=workers)
    if kind == "celery":
        if not settings.broker_url:
            raise UserError("--executor celery needs PNAS_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
        from controller.celery_executor import CeleryExecutor

        return CeleryExecutor(settings)
    raise UserError(f"unknown executor {kind!r}; choose local or celery")


def default_run_name(cfg: SearchConfig, preset: str | None) -> str:
    """preset-strategy-digest; the digest is of the settings that differ from the defaults, so a
    new setting (with its default) in a later version leaves the name, and the resume, alone."""
    digest = hashlib.sha1(cfg.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:6]
    return f"{preset or 'search'}-{cfg.strategy}-{digest}"


def same_settings_run(store: "Store", cfg: SearchConfig, *, generated: str) -> str:
    """The generated name, or the run an earlier version named otherwise with the same settings
    (its digest covered every setting, new ones included): a search without --name resumes it."""
    if store.get_run(generated) is not None:
        return generated
    prefix = generated.rsplit("-", 1)[0] + "-"
    same = [r.name for r in store.list_runs() if r.name.startswith(prefix) and _settings_of(r.config) == cfg]
    return same[0] if len(same) == 1 else generated


def _settings_of(config: dict) -> SearchConfig | None:
    try:
        return SearchConfig.from_json(config)
    except Exception:  # a run of another version's settings: not this one
        return None


def progress_line(p) -> str:
    """A level's live line: children trained (a child promoted to its next rung stays trained
    while it trains further: `shared.progress.Tally`), running, failed, lost, best (of the
    children trained to the full epochs, as `pnas runs` says it), ETA."""
    c = p.counts
    best = best_words(p.best, p.best_epochs, p.full_epochs)
    eta = _dur(p.eta) if p.eta is not None else "?"
    further = f", {p.further} promoted to their next rung" if p.further else ""
    return (
        f"  level {p.b}: {p.trained}/{p.total} trained ({c['running']} running{further}, {c['failed']} failed, "
        f"{c['lost']} lost), best {best}, elapsed {_dur(p.elapsed)}, ETA {eta}"
    )


class RichReporter:
    """Progress per level for a person at a terminal (or a log when not a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.b = 0

    def level_started(self, b: int, *, total: int, candidates: int, resumed: bool) -> None:
        self.b = b
        what = "resuming" if resumed else "training"
        scored = f" (top {total} of {candidates:,} candidates)" if b > 1 else ""
        console.print(f"[bold]level {b}[/bold]: {what} {total} children{scored}")

    def progress(self, p) -> None:
        now = time.monotonic()
        finished = p.done == p.total
        if not finished and now - self.last < (1.0 if console.is_terminal else 15.0):
            return
        self.last = now
        line = progress_line(p)
        if console.is_terminal and not finished:
            console.print(line, end="\r", highlight=False, soft_wrap=True)
        else:
            console.print(line, highlight=False)

    def fit_progress(self, p) -> None:
        """The predictor fit, like the training progress: live on a terminal, else every 15 s."""
        now = time.monotonic()
        finished = p.epoch == p.epochs
        if not finished and now - self.last < (1.0 if console.is_terminal else 15.0):
            return
        self.last = now
        eta = _dur(p.eta) if p.eta is not None else "?"
        line = (
            f"  level {p.b} predictor: {p.members} members, epoch {p.epoch}/{p.epochs} on {p.rows} children, "
            f"loss {p.loss:.4f}, elapsed {_dur(p.elapsed)}, ETA {eta}"
        )
        if console.is_terminal and not finished:
            console.print(line, end="\r", highlight=False, soft_wrap=True)
        else:
            console.print(line, highlight=False)

    def level_done(self, b: int, *, summary: dict) -> None:
        ex = summary["spearman_extrapolation"]
        ins = summary["spearman_insample"]
        console.print(
            f"  level {b} done: {summary['succeeded']} succeeded, {summary['failed']} failed, "
            f"best {summary['best']:.4f}, mean {summary['mean']:.4f}"
            + (f", predictor Spearman {ex:.3f} on these children" if ex is not None else "")
            + (f", {ins:.3f} in-sample after refit" if ins is not None else ""),
            highlight=False,
        )

    def message(self, text: str) -> None:
        console.print(f"  {text}", highlight=False)


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _sigterm_is_ctrl_c() -> None:
    """SIGTERM (`kill`, `docker stop`, systemd, Kubernetes) stops the search as Ctrl-C does:
    the run is marked stopped, its lock released, exit 130, and the same command resumes."""

    def _interrupt(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the clean stop finish
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _interrupt)


def print_top(store: Store, run: RunView, k: int = 5) -> None:
    rows = store.top(run.id, k=k)
    t = Table(title=f"top {k} of run {run.name!r}")
    for col in ("rank", "job", "level", "accuracy", "params", "cell"):
        t.add_column(col, justify="right" if col != "cell" else "left")
    from pnas.render import readable  # the stored form, as `pnas top` and the SQL views print it

    for i, j in enumerate(rows, 1):
        t.add_row(str(i), str(j.id), str(j.level), f"{j.reward:.4f}", f"{j.params:,}" if j.params else "-", readable(j.cell))
    Console().print(t)


def print_closing(store: Store, run: RunView, *, broker: bool) -> None:
    """After the leaderboard: the predictor's quality in words and what to type next."""
    from pnas.commands._closing import closing_lines

    for line in closing_lines(store, run, broker=broker):
        print(line)


def register(app: typer.Typer) -> None:
    @app.command()
    def search(
        preset: str = typer.Option(None, help="quick (digits, minutes on a CPU) or paper (CIFAR-10, B=5, K=256)."),
        config: Path = typer.Option(None, "--config", "-c", help="TOML or YAML file with any setting below."),
        name: str = typer.Option(None, help="Run name; the same name resumes the run."),
        executor: str = typer.Option(None, help="local (default) or celery (default when PNAS_BROKER_URL is set)."),
        workers: int = typer.Option(None, help="Local worker processes (local executor)."),
        strategy: str = typer.Option(None, help="pnas (default), random (same budget, random children) or evolution (regularized evolution, same budget)."),
        seed: int = typer.Option(None),
        dataset: str = typer.Option(None, help="digits, cifar10, cifar100, mnist, fashion_mnist, npz:PATH or folder:PATH (one subfolder of images per class)."),
        ops: str = typer.Option(None, help="Comma-separated operators."),
        blocks: int = typer.Option(None, "--blocks", "-B"),
        beam: int = typer.Option(None, "--beam", "-K"),
        lookback: int = typer.Option(None, help="2 = H[c-1] and H[c-2] (paper); 1 = H[c-1] only."),
        lookforward: int = typer.Option(None, help="A block may read the first N earlier blocks of its cell (default: all; 0 = none)."),
        predictor: str = typer.Option(None, help="lstm (paper's best) or mlp."),
        predictor_update: str = typer.Option(None, help="refit (default: from scratch at every level) or finetune (from the previous level's weights)."),
        epochs: int = typer.Option(None, help="Epochs per child."),
        filters: int = typer.Option(None, "--filters", "-F"),
        n: int = typer.Option(None, "--n", "-N", help="Cells per stage."),
        lr: float = typer.Option(None, "--lr"),
        batch_size: int = typer.Option(None),
        keep_predictions: int = typer.Option(None, help="Also store the top N scored candidates per level."),
        fidelity: str = typer.Option(None, help="full (default: every child every epoch, the paper) or asha (successive halving inside each level)."),
        min_epochs: int = typer.Option(None, help="asha: the first rung, in epochs (default 1)."),
        reduction_factor: int = typer.Option(None, help="asha: eta; the best 1/eta of a rung goes on to the next, eta times longer (default 3)."),
        deterministic: bool = typer.Option(
            None, "--deterministic", help="Children train with TensorFlow op determinism (repeatable on a GPU, slower)."
        ),
        max_params: int = typer.Option(None, "--max-params", help="Train no child whose network has more parameters (count_params)."),
        max_flops: int = typer.Option(None, "--max-flops", help="Train no child whose network needs more multiply-adds per image."),
        max_latency_ms: float = typer.Option(None, "--max-latency-ms", help="Train no child whose predicted batch-1 latency (--latency-table) is higher."),
        latency_table: str = typer.Option(None, "--latency-table", help="A `pnas latency-table` file: every child's predicted latency on its device."),
        objective: str = typer.Option(None, "--objective", help="accuracy (default: the top K by predicted accuracy) or pareto (K from the fronts of predicted accuracy and --cost)."),
        cost: str = typer.Option(None, "--cost", help="The cost the pareto objective weighs: params (default), flops or latency."),
        cost_network: str = typer.Option(None, "--cost-network", help="Which network the budgets are of: search (default, the children's) or final (pnas final's F and N)."),
        checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Save a checkpoint every N epochs so a lost training resumes (0 = never; default: children whose epoch takes over a minute)."),
    ) -> None:
        """Run a progressive search; the same command resumes it after a stop or crash."""
        _sigterm_is_ctrl_c()
        file_data = read_config_file(config) if config else {}
        if not preset and not config:
            preset = "quick"
            console.print("using --preset quick (digits, a few minutes on a CPU); --preset paper is the paper's setting")
        train = {
            k: v
            for k, v in dict(
                dataset=dataset, epochs=epochs, filters=filters, cells_per_stage=n, learning_rate=lr, batch_size=batch_size,
                deterministic=deterministic,
                checkpoint_every=checkpoint_every,
            ).items()
            if v is not None
        }
        overrides = dict(
            strategy=strategy,
            seed=seed,
            ops=ops,
            blocks=blocks,
            beam=beam,
            lookback=lookback,
            lookforward=lookforward,
            predictor=predictor,
            predictor_update=predictor_update,
            keep_predictions=keep_predictions,
            fidelity=fidelity,
            min_epochs=min_epochs,
            reduction_factor=reduction_factor,
            max_params=max_params,
            max_flops=max_flops,
            max_latency_ms=max_latency_ms,
            latency_table=latency_table,
            cost_network=cost_network,
            objective=objective,
            cost=cost,
        )
        if train:
            overrides["train"] = train
        cfg, extras = build_config(preset=preset, file_data=file_data, overrides=overrides)
        run_name = name or extras.get("name") or default_run_name(cfg, preset or file_data.get("preset"))
        n_workers = workers or int(extras.get("workers", 1))
        if n_workers < 1:
            raise UserError("--workers must be at least 1")

        from controller.search import Controller
        from pnas.dataset_check import check_dataset
        from shared.store import Store

        kind = executor_kind(executor or extras.get("executor"))
        # Before anything is stored: a bad dataset is one line, not a run of failing children.
        note = check_dataset(cfg.train, executor=kind)
        if note:
            console.print(note, highlight=False)
        settings = get_settings()
        store = Store.from_settings(settings)
        store.ensure_schema()
        if not (name or extras.get("name")):
            run_name = same_settings_run(store, cfg, generated=run_name)
        ex = make_executor(kind, workers=n_workers)
        hook = None
        if settings.controller_hook:
            from shared.plugins import load_callable

            hook = load_callable(settings.controller_hook, what="PNAS_CONTROLLER_HOOK")
        from worker.datasets import dataset_spec

        ctl = Controller(store=store, executor=ex, settings=settings, reporter=RichReporter(), hook=hook,
                         dataset_spec=dataset_spec)
        if ex.name == "celery" and store.get_run(run_name) is None:  # before a new run's first child
            from pnas.dataset_check import check_on_a_worker

            check_on_a_worker(ex, cfg.train, say=lambda text: console.print(text, highlight=False))
        run = ctl.open_run(name=run_name, config=cfg)
        if run.state == "finished":
            console.print(f"run {run.name!r} already finished; its results:")
            print_top(store, run)
            print_closing(store, run, broker=bool(settings.broker_url))
            return
        console.print(
            f"run [bold]{run.name}[/bold] on {store.safe_url} with the {ex.name} executor"
            + (f" ({n_workers} worker process{'es' if n_workers > 1 else ''})" if ex.name == "local" else "")
            + ("" if name or extras.get("name") else "; the name comes from the preset and settings (--name chooses one)")
        )
        try:
            run = ctl.run(run)
        except KeyboardInterrupt:
            console.print(f"\nstopped; run the same command to resume run {run.name!r}")
            sys.exit(130)
        except SearchCancelled as exc:
            console.print(f"stopped: {exc}")
            sys.exit(130)
        except SearchAborted as exc:
            console.print(f"[red]search aborted:[/red] {exc}")
            sys.exit(3)
        console.print(f"run {run.name!r} finished")
        print_top(store, run)
        print_closing(store, run, broker=bool(settings.broker_url))
