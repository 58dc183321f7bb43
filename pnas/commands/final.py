"""`pnas final RUN [--rank 1] [--recipe paper-cifar] [--epochs 600] [--run-now]`: train a
chosen cell at full size, as a job like any other.

``--recipe`` lays a named recipe (`shared.recipes`) over the run's training settings; every
flag overrides it again. The recipe's name is stored with the job's settings.

The job (kind ``final``, level 0, the overrides in its ``train``) goes into the same table
as the search's children, so it is claimed, leased, retried and recorded the same way, and
its result shows in `pnas show ID` and `pnas top RUN --final`. Who trains it:
- with PNAS_BROKER_URL set, a Celery worker: the job id is sent by task name;
- otherwise (the embedded default) ``--run-now`` trains it in this process through the
  worker's runner (the queued job, when one is waiting); without it the command refuses in
  one line (exit 2), since nothing would ever take the job.
Asking again with the same settings finds the same job instead of adding a second one; if
that job was lost (its trainer killed: the lease ran out), asking again with ``--run-now``
(or with a broker) trains it again, and it resumes from its last checkpoint.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from pnas.commands.export import ranked_child
from pnas.render import dumps, job_dict, open_store
from shared.errors import UserError
from shared.jobs import JobState
from shared.recipes import RECIPES, recipe, recipes_help


def final_overrides(run_config: dict, *, recipe_name: str | None = None, **flags) -> dict:
    """The TrainConfig overrides of a final training (recipe, then flags), checked against
    the run's settings."""
    from shared.config import SearchConfig, TrainConfig

    overrides = {**recipe(recipe_name), **{k: v for k, v in flags.items() if v is not None}}
    base = SearchConfig.from_json(run_config).train.model_dump()
    try:
        TrainConfig.model_validate({**base, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "setting"
        raise UserError(f"invalid {where.replace('_', '-')}: {err['msg']}") from None
    return overrides


def _asked_before(store, run_id: int, arch_id: str, overrides: dict) -> bool:
    """Whether this training is in the table already, in a state other than waiting for a
    worker (what it is then is worth showing, even with no broker to train it)."""
    waiting = (JobState.queued.value, JobState.lost.value)
    return any(j.arch_id == arch_id and j.train == overrides and j.state not in waiting
               for j in store.jobs(run_id, kind="final"))  # fmt: skip


def _run_here(store, job_id: int, settings) -> str:
    """Train the job in this process, listed among the workers (as this process, on its
    device) while it trains and offline once it is done."""
    import os
    import socket

    from worker.runner import run_job, worker_name

    name = worker_name()
    store.register_worker(name, hostname=socket.gethostname(), device=f"this process (pnas final --run-now, pid {os.getpid()})")
    try:
        return run_job(store, job_id, settings=settings, worker=name, trainer=_echo_trainer(settings.trainer)).state
    finally:
        store.worker_stopped(name)


def _echo_trainer(path: str):
    """The configured trainer, with its log lines also printed here (a person is watching)."""
    from worker.runner import load_trainer

    base = load_trainer(path)

    def trainer(cell, train, **kw):
        inner = kw.get("log")

        def log(line: str) -> None:
            print(f"  {line}", file=sys.stderr, flush=True)
            if inner:
                inner(line)

        return base(cell, train, **{**kw, "log": log})

    return trainer


def _resume_point(store, settings, job) -> str:
    """Where a lost final training's next attempt starts: its newest checkpoint in this
    database's directory (the trainer says again which one it loaded), or epoch 1."""
    from worker.checkpoints import CheckpointStore

    try:
        cs = CheckpointStore.from_settings(settings, database=store.database_identity())
        found = cs.checkpoints(job.run_id, job.id)
    except Exception as exc:  # an unreachable bucket: the trainer says what it finds
        return f"(its checkpoints cannot be listed here: {exc})"
    if not found:
        return f"from epoch 1: no checkpoint found in {cs.job_dir(job.run_id, job.id)}"
    _attempt, epoch, path = max(found, key=lambda c: (c[1], c[0]))
    return f"from its checkpoint of epoch {epoch} ({path})"


def register(app: typer.Typer) -> None:
    @app.command()
    def final(
        run: str = typer.Argument(..., help="Run name or id."),
        rank: int = typer.Option(1, "--rank", "-r", help="Leaderboard position of the cell (1 = best)."),
        recipe_name: str = typer.Option(None, "--recipe", help=f"A named recipe ({', '.join(RECIPES)}); {recipes_help()}. Default: N=3 F=48 600 epochs over the run's settings."),
        epochs: int = typer.Option(None, "--epochs", help="Training epochs (default 600, the paper's)."),
        n: int = typer.Option(None, "--n", "-N", help="Cells per stage (default 3, PNASNet-5 on CIFAR)."),
        filters: int = typer.Option(None, "--filters", "-F", help="F (default 48, PNASNet-5 on CIFAR)."),
        lr: float = typer.Option(None, "--lr", help="Initial learning rate (default: the run's)."),
        batch_size: int = typer.Option(None, "--batch-size", help="Default: the run's."),
        drop_path_keep_prob: float = typer.Option(None, "--drop-path-keep-prob", help="e.g. 0.6 as slim's CIFAR training (default: the run's)."),
        validation_size: float = typer.Option(None, "--validation-size", help=">= 1 images held out, < 1 a fraction (default: the run's)."),
        stem: str = typer.Option(None, "--stem", help="cifar or imagenet."),
        momentum: float = typer.Option(None, "--momentum", help="SGD momentum."),
        weight_decay: float = typer.Option(None, "--weight-decay", help="L2 on convolutions and the classifier."),
        aux_head: bool = typer.Option(None, "--aux-head/--no-aux-head", help="slim's auxiliary classifier."),
        aux_weight: float = typer.Option(None, "--aux-weight", help="Weight of the auxiliary loss (slim 0.4)."),
        label_smoothing: float = typer.Option(None, "--label-smoothing", help="e.g. 0.1 (slim's ImageNet)."),
        clip_norm: float = typer.Option(None, "--clip-norm", help="Clip the global gradient norm to this."),
        dropout: float = typer.Option(None, "--dropout", help="Dropout before the classifier."),
        augment: str = typer.Option(None, "--augment", help="standard, none or auto."),
        cutout: int = typer.Option(None, "--cutout", help="Cutout square side in pixels (0 = off)."),
        image_size: int = typer.Option(None, "--image-size", help="folder: datasets are resized to this."),
        bn_momentum: float = typer.Option(None, "--bn-momentum", help="Batch-norm moving-average decay."),
        bn_epsilon: float = typer.Option(None, "--bn-epsilon", help="Batch-norm epsilon."),
        reward: str = typer.Option(None, "--reward", help="best or final epoch's validation accuracy."),
        evaluate_test: bool = typer.Option(None, "--evaluate-test/--no-evaluate-test", help="Measure test accuracy at the end (default on)."),
        checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Save a checkpoint every N epochs so a lost training resumes (0 = never; default: every epoch)."),
        run_now: bool = typer.Option(False, "--run-now", help="Train it in this process now (the embedded default has no other worker)."),
        as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    ) -> None:
        """Enqueue (or, with --run-now, run) the full-size training of a ranked cell."""
        from shared.settings import get_settings

        settings = get_settings()
        store = open_store()
        r = store.require_run(run)
        child = ranked_child(store, r, rank)
        overrides = final_overrides(r.config, recipe_name=recipe_name, epochs=epochs, cells_per_stage=n, filters=filters,
                                    learning_rate=lr, batch_size=batch_size, drop_path_keep_prob=drop_path_keep_prob,
                                    validation_size=validation_size, stem=stem, momentum=momentum,
                                    weight_decay=weight_decay, aux_head=aux_head, aux_weight=aux_weight,
                                    label_smoothing=label_smoothing, clip_norm=clip_norm, dropout=dropout,
                                    augment=augment, cutout=cutout, image_size=image_size, bn_momentum=bn_momentum,
                                    bn_epsilon=bn_epsilon, reward=reward, evaluate_test=evaluate_test,
                                    checkpoint_every=checkpoint_every)  # fmt: skip
        if not run_now and not settings.broker_url and not _asked_before(store, r.id, child.arch_id, overrides):
            raise UserError("no broker (PNAS_BROKER_URL is not set), so no worker would take this training: "
                            "add --run-now to train it in this process")  # fmt: skip
        costs, latency = _final_costs(r.config, overrides, child.cell)
        (job_id,) = store.add_jobs(r.id, level=0, children=[(child.arch_id, child.cell, None, None)],
                                   max_attempts=settings.max_attempts, kind="final", train=overrides,
                                   costs=[costs] if costs else None)  # fmt: skip
        job = store.job(job_id)
        action = "exists"
        if job.state == JobState.running.value and job_id in store.sweep_expired(r.id):
            job = store.job(job_id)  # its trainer stopped renewing the lease (killed): lost
        if job.state == JobState.lost.value and (run_now or settings.broker_url):
            # Asked again for a training whose trainer was killed: train it again; the runner
            # resumes it from its last checkpoint (`worker.checkpoints`).
            store.retry(r.id, job_ids=[job_id], states=[JobState.lost.value])
            job = store.job(job_id)
            print(f"job {job_id} was lost ({job.error_message}): training it again {_resume_point(store, settings, job)}",
                  file=sys.stderr)  # fmt: skip
        if job.state == JobState.queued.value:
            if run_now:
                print(f"training job {job_id} ({child.arch_id}, {dumps(overrides)}) in this process", file=sys.stderr)
                action = f"ran: {_run_here(store, job_id, settings)}"
            elif settings.broker_url:
                from controller.celery_executor import CeleryExecutor

                ex = CeleryExecutor(settings)
                ex.submit([job_id])
                sent = not ex.unsent
                ex.stop()
                action = "sent to the Celery workers" if sent else "queued (the broker did not answer; send it again later)"
            else:
                action = "queued"
        job = store.job(job_id)
        doc = {**job_dict(job), "run": r.name, "from_job": child.id, "from_rank": rank, "train": job.train,
               "action": action, "error_message": job.error_message}  # fmt: skip
        if as_json:
            print(dumps(doc))
        else:
            print(f"final training of run {r.name!r} rank {rank} (search job {child.id}, {child.arch_id}): "
                  f"job {job_id}, {job.state}; {action}")  # fmt: skip
            print(f"  settings: {dumps(job.train)}")
            if costs:
                print(f"  network: {costs[0]:,} parameters, {costs[1]:,} multiply-adds per image")
            if latency:
                print(f"  {latency}")
            if job.state == JobState.succeeded.value:
                if job.test_accuracy is not None:
                    print(f"  test accuracy {job.test_accuracy:.4f} (error {100 * (1 - job.test_accuracy):.2f} %)")
                print(f"  accuracy {job.reward:.4f}; details: `pnas show {job_id}`; all final trainings: `pnas top {r.name} --final`")
            elif job.state == JobState.queued.value and action == "queued":
                print("  no broker is configured (PNAS_BROKER_URL): add --run-now to train it in this process")
            elif job.state in (JobState.failed.value, JobState.lost.value):
                print(f"  {job.error_class}: {job.error_message}; `pnas show {job_id}` has the log tail")
        if job.state in (JobState.failed.value, JobState.lost.value):
            sys.exit(1)


def _final_costs(run_config: dict, overrides: dict, cell: list) -> tuple[tuple[int, int, float | None] | None, str | None]:
    """((params, flops, latency_ms) of the network this final training builds, as the search's
    children get theirs (`shared.budget.cell_costs`), or None if its dataset cannot be read
    here; and, when the run has a ``latency_table``, the line that says the predicted latency
    or why there is none (a table covers one network's settings: the final one may differ)."""
    from shared.budget import cell_costs
    from shared.config import SearchConfig, TrainConfig
    from shared.latency import load_table
    from worker.datasets import dataset_spec

    cfg = SearchConfig.from_json(run_config)
    try:
        train = TrainConfig.model_validate({**cfg.train.model_dump(mode="json"), **overrides})
        params, flops, _ = cell_costs(cell, train, dataset_spec)
    except (UserError, ValueError):
        return None, None
    if cfg.latency_table is None:
        return (params, flops, None), None
    try:
        table = load_table(cfg.latency_table)  # as `shared.budget.run_table` reads it for the search
        _, _, ms = cell_costs(cell, train, dataset_spec, table)
    except UserError as exc:
        return (params, flops, None), f"latency: not predicted: {exc}"
    return (params, flops, ms), f"latency: {ms:.3g} ms predicted at batch size {table.batch_size} on {table.device!r} ({table.path})"
