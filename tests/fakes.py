"""An instant, deterministic trainer for testing the controller and the queue (not the ML).

Loaded by worker processes through ``PNAS_TRAINER=tests.fakes:instant_trainer``.
The reward is an additive function of the cell's (input, operator) pairs, so the best cell
is known: every block reads ``H[c-1]`` through ``PLANTED_OP`` twice.
Its validation accuracy rises over the epochs (`learning_curve`) to that reward at the last
one, and it honours ``until_epoch`` and ``checkpoints`` as the real trainer does (a checkpoint
holds the epochs' metrics only), so multi-fidelity searches can be tested with it.
Environment knobs:
- ``PNAS_FAKE_SLEEP``: seconds each child takes (for kill and resume tests), spread over its
  epochs and slept in slices of at most 0.1 s with the runner's ``check`` between them (as
  the real trainer checks after every batch);
- ``PNAS_FAKE_FAIL``: comma-separated arch ids that raise (final failures);
- ``PNAS_FAKE_FAIL_ALL=1``: every child raises;
- ``PNAS_FAKE_NOISE=1``: write TensorFlow's CUDA probing lines to file descriptor 2 first;
- ``PNAS_FAKE_LOG``: append one line per trained child to this file (to count trainings);
- ``PNAS_FAKE_EPOCH_LOG``: append ``arch_id epoch`` per epoch trained (to count epochs);
- ``PNAS_FAKE_LOAD_DATASET=1``: load the run's dataset first, as the real trainer does.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import TYPE_CHECKING

from shared.jobs import EpochMetrics, TrainResult

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.store import Store

PLANTED_OP = "sep3x3"


def pair_value(inp: int, op: str) -> float:
    """Mostly the operator (learnable across positions), a little the input."""
    op_part = 1.0 if op == PLANTED_OP else (zlib.crc32(op.encode()) % 1000) / 1000 * 0.7
    return 0.9 * op_part + (0.1 if inp == -1 else 0.0)


def true_reward(cell) -> float:
    vals = [(pair_value(b.in1, b.op1) + pair_value(b.in2, b.op2)) / 2 for b in cell.blocks]
    return 0.2 + 0.7 * sum(vals) / len(vals) + 0.01 * len(cell.blocks)


TF_NOISE = ("E0000 00:00:1765000000.000000  4242 cuda_executor.cc:1228] failed call to cuInit: INTERNAL: CUDA error: "
            "Failed call to cuInit: UNKNOWN ERROR (303)\n"
            "W0000 00:00:1765000000.000000  4242 gpu_device.cc:2342] Cannot dlopen some GPU libraries.\n")


def learning_curve(cell, epoch: int, epochs: int) -> float:
    """The validation accuracy after ``epoch`` of ``epochs``: rises to `true_reward` at the last
    epoch, some cells faster than others (so early rungs rank them a little differently)."""
    speed = 0.5 + (zlib.crc32(cell.arch_id.encode()) % 1000) / 1000
    return true_reward(cell) - 0.3 * speed * (1 - epoch / max(1, epochs))


def instant_trainer(cell, train, *, seed=0, on_epoch=None, log=None, check=None, checkpoints=None, until_epoch=None, **_):
    sleep = float(os.environ.get("PNAS_FAKE_SLEEP", "0"))
    if log:
        log(f"fake training {cell.arch_id}")
    if os.environ.get("PNAS_FAKE_NOISE") == "1":  # what importing TensorFlow prints on a machine without a GPU
        os.write(2, TF_NOISE.encode())
    if os.environ.get("PNAS_FAKE_LOAD_DATASET") == "1":
        from shared.settings import get_settings
        from worker.datasets import load_for_child

        load_for_child(train, get_settings().data_dir)
    if os.environ.get("PNAS_FAKE_FAIL_ALL") == "1" or cell.arch_id in os.environ.get("PNAS_FAKE_FAIL", "").split(","):
        raise RuntimeError(f"planted failure for {cell.arch_id}")
    t0 = time.perf_counter()
    r = true_reward(cell)
    epochs = max(1, train.epochs)
    stop_at = epochs if until_epoch is None else min(until_epoch, epochs)
    history: list[EpochMetrics] = []
    identity = {"arch_id": cell.arch_id, "epochs": epochs, "fake": True}
    if checkpoints is not None:  # as the real trainer: continue from an earlier attempt's newest
        ck = checkpoints.latest(identity)
        if ck is not None:
            history = [EpochMetrics(**m) for m in ck.header["history"]]
            checkpoints.resumed(ck.epoch)
    for e in range(len(history) + 1, stop_at + 1):
        end = time.monotonic() + sleep / epochs
        while time.monotonic() < end:
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
            if check:
                check()
        acc = learning_curve(cell, e, epochs)
        m = EpochMetrics(epoch=e, loss=1 - acc, accuracy=acc, val_loss=1 - acc, val_accuracy=acc, seconds=0.0)
        history.append(m)
        if on_epoch:
            on_epoch(m)
        epoch_log = os.environ.get("PNAS_FAKE_EPOCH_LOG")
        if epoch_log:
            with open(epoch_log, "a") as f:
                f.write(f"{cell.arch_id} {e}\n")
        if checkpoints is not None and checkpoints.should_save(e, 0.0):
            from dataclasses import asdict

            from worker.checkpoints import encode

            checkpoints.save(encode(e, identity, [], [], [asdict(h) for h in history]), e)
    best = max(history, key=lambda h: h.val_accuracy)
    path = os.environ.get("PNAS_FAKE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{cell.arch_id} {os.getpid()}\n")
    return TrainResult(
        reward=best.val_accuracy if train.reward == "best" else history[-1].val_accuracy,
        reward_epoch=best.epoch if train.reward == "best" else history[-1].epoch,
        history=history,
        params=1000 * len(cell.blocks),
        wall_seconds=time.perf_counter() - t0,
        device="fake",
        test_accuracy=r - 0.01 if train.evaluate_test else None,  # "test" a little below "validation"
    )


def planted_best(space):
    from shared.space import Cell

    return Cell.of([[-1, PLANTED_OP, -1, PLANTED_OP]] * space.blocks, space.ops)


def kill_at(step: str, b: int) -> None:
    """Controller hook: SIGKILL the controller after step ``PNAS_KILL_AT`` (e.g. 'scored:2')."""
    import signal

    if os.environ.get("PNAS_KILL_AT") == f"{step}:{b}":
        os.kill(os.getpid(), signal.SIGKILL)


def fake_search_env(db_url: str, **extra) -> dict:
    """The environment for a `pnas search` subprocess that trains with `instant_trainer`:
    the caller's environment without its PNAS_ settings, short leases and polls."""
    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("PNAS_")}
    env.update(
        PNAS_DATABASE_URL=db_url,
        PNAS_TRAINER="tests.fakes:instant_trainer",
        PNAS_LEASE_SECONDS="5",
        PNAS_HEARTBEAT_SECONDS="1",
        PNAS_POLL_SECONDS="0.3",
        PYTHONPATH=str(ROOT),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def oom_unless_alone(cell, train, *, seed=0, on_epoch=None, log=None, **kw):
    """`instant_trainer` that runs out of memory unless its worker has the whole GPU share.

    Reads what worker/gpu_share.py admitted this process with; appends ``start end shares k``
    (monotonic-free wall clock) to PNAS_FAKE_SHARES_LOG, so a test can check who ran beside whom.
    """
    from shared.errors import ChildOutOfMemory
    from worker.gpu_share import current_allowance

    got = current_allowance()
    start = time.time()
    time.sleep(float(os.environ.get("PNAS_FAKE_SLEEP", "0")))
    with open(os.environ["PNAS_FAKE_SHARES_LOG"], "a") as f:
        f.write(f"{cell.arch_id} {start} {time.time()} {got.get('shares')} {got.get('k')}\n")
    if not got or got["shares"] < got["k"]:
        raise ChildOutOfMemory(f"fake out of memory for {cell.arch_id} with {got}")
    return instant_trainer(cell, train, seed=seed, on_epoch=on_epoch, log=log, **kw)


class InlineExecutor:
    """Trains every queued child with `instant_trainer` in the controller's own thread (tests and
    bench scripts: no worker processes)."""

    name = "inline"

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings, self.pending = store, settings, []

    def ready(self) -> None: ...

    def start(self, run_id: int) -> None: ...

    def submit(self, job_ids) -> None:
        self.pending.extend(job_ids)

    def check(self) -> None:
        from worker.runner import run_job

        while self.pending:
            run_job(self.store, self.pending.pop(0), settings=self.settings, worker="inline", trainer=instant_trainer)

    def reconcile(self, queued_ids, *, recheck=None) -> list[int]:
        return []

    def stop(self) -> None: ...
