"""A search's dataset, checked before the run exists (the composition root knows the worker's loader).

With the local executor the workers are this machine's processes: the dataset is loaded here
(downloaded into the shared cache if needed), so a missing file, a bad npz or an empty offline
cache is one line before anything is stored. With Celery the workers may mount data this
machine lacks: what is on this machine is checked the same way, and then, before a new run
exists, one worker loads it too (`controller.dataset_probe`) and says where it is missing.
"""

from __future__ import annotations

from typing import Any, Callable

from shared.config import TrainConfig
from shared.settings import endpoint, get_settings


def check_dataset(t: TrainConfig, *, executor: str) -> str | None:
    """Load ``t.dataset`` as a child would; `UserError` if it cannot be. Returns None when it
    was checked, or a note saying why not (Celery, and the data is not on this machine)."""
    from worker.datasets import load_dataset, on_this_machine

    cache = get_settings().data_dir
    if executor != "local" and not on_this_machine(t.dataset, cache):
        return f"dataset {t.dataset} is not on this machine; a worker will check it"
    load_dataset(
        t.dataset,
        validation_size=t.validation_size,
        seed=t.data_seed,
        cache_dir=cache,
        max_train_samples=t.max_train_samples,
        image_size=t.image_size,
    )
    return None


def check_on_a_worker(executor: Any, t: TrainConfig, *, say: Callable[[str], None]) -> None:
    """Celery: one worker loads ``t.dataset`` before the run exists; `UserError` if it cannot."""
    from controller.dataset_probe import ask_a_worker

    where = ask_a_worker(
        executor.app, queue=executor.queue, train=t, broker=endpoint(executor.broker_url),
        wait_seconds=get_settings().dataset_check_seconds, say=say,
    )  # fmt: skip
    say(f"dataset {t.dataset} checked by {where}")
