"""Checkpoints of a child's training, so that a lost child resumes where it stopped.

Where: ``PNAS_CHECKPOINT_URL``, a directory (default: beside the dataset cache) or an
``s3://bucket/prefix`` (fsspec with s3fs, credentials from the environment as boto reads
them). Layout: ``ROOT/db-D/run-R/job-J/a{attempt}-e{epoch:05d}.ckpt``, D the database's
identity (`Store.database_identity`): every database counts runs and jobs from 1, so ids
alone would let two databases share a directory. A final training's weights stay as
``ROOT/db-D/run-R/job-J/final.ckpt`` when it succeeds. Directories of the layout before
identities (``ROOT/run-R``) belong to no database: never resumed from, never removed.

A checkpoint is one blob: a magic line, a JSON header (what the weights belong to, the
epoch, the per-epoch metrics so far, the sha256 of the payload) and an ``.npz`` payload
(model weights, then optimizer variables). Writes are atomic: a temporary name then a
rename on a directory, one PUT on S3; so a worker killed while writing leaves the previous
checkpoint intact. A blob that cannot be read (truncated, corrupt, another architecture)
is reported and skipped, never loaded.

No TensorFlow here: the Keras side (the callback, the restore) is `worker.checkpoint_keras`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

log = logging.getLogger("pnas.worker.checkpoints")

MAGIC = b"PNASCKPT1\n"
_NAME = re.compile(r"^a(\d+)-e(\d+)\.ckpt$")
FINAL_NAME = "final.ckpt"


class CheckpointUnreadable(Exception):
    """The blob is not a checkpoint this child can load."""


@dataclass
class Checkpoint:
    epoch: int  # epochs completed (1-based count)
    header: dict  # identity, history, extra state
    arrays: list[np.ndarray]  # model weights, then optimizer variables (header says how many)

    @property
    def n_weights(self) -> int:
        return int(self.header["n_weights"])


def encode(epoch: int, identity: dict, weights: list, opt_vars: list, history: list[dict], extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *[np.asarray(a) for a in [*weights, *opt_vars]])
    payload = buf.getvalue()
    header = {
        "epoch": int(epoch),
        "identity": identity,
        "n_weights": len(weights),
        "n_arrays": len(weights) + len(opt_vars),
        "history": history,
        "extra": extra or {},
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
    }
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "big") + head + payload


def decode(blob: bytes, identity: dict | None = None) -> Checkpoint:
    """Parse and verify a blob; `CheckpointUnreadable` says why it cannot be used."""
    if not blob.startswith(MAGIC):
        raise CheckpointUnreadable("not a pnas checkpoint (bad magic)")
    try:
        n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 8], "big")
        start = len(MAGIC) + 8
        header = json.loads(blob[start : start + n])
        payload = blob[start + n :]
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointUnreadable(f"header unreadable (truncated or corrupt): {exc}") from None
    if len(payload) != header.get("payload_bytes") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointUnreadable(f"truncated or corrupt ({len(payload)} of {header.get('payload_bytes')} payload bytes)")
    if identity is not None and header.get("identity") != identity:
        raise CheckpointUnreadable(f"from another child or architecture ({header.get('identity')} is not {identity})")
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        arrays = [z[f"arr_{i}"] for i in range(int(header["n_arrays"]))]
    return Checkpoint(epoch=int(header["epoch"]), header=header, arrays=arrays)


class CheckpointStore:
    """A directory or S3 prefix holding every run's checkpoints."""

    def __init__(self, url: str, *, database: str | None = None) -> None:
        """``database``: the identity of the database whose runs these are (None: only
        directories named outright, as `pnas train` uses)."""
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.local = self.fs.protocol in ("file", "local") or "file" in tuple(self.fs.protocol)
        self.database = database

    @classmethod
    def from_settings(cls, settings: Any, *, database: str | None = None) -> "CheckpointStore":
        return cls(settings.checkpoint_location, database=database)

    def job_dir(self, run_id: int, job_id: int) -> str:
        return f"{self.run_dir(run_id)}/job-{job_id}"

    def run_dir(self, run_id: int) -> str:
        if not self.database:
            raise ValueError("a run's checkpoints are keyed by its database: give CheckpointStore(database=...)")
        return f"{self.root}/db-{self.database}/run-{run_id}"

    def unowned_run_dir(self, run_id: int) -> str:
        """Where the layout before database identities kept run ``run_id`` of any database."""
        return f"{self.root}/run-{run_id}"

    def write(self, path: str, blob: bytes) -> None:
        """Atomic: a reader sees the old blob or the whole new one, never part of it."""
        if self.local:
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, f".tmp-{uuid.uuid4().hex}")
            try:
                with open(tmp, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        else:
            self.fs.pipe_file(path, blob)  # one PUT: S3 shows an object whole or not at all

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def checkpoints(self, run_id: int, job_id: int) -> list[tuple[int, int, str]]:
        """(attempt, epoch, path) of a job's checkpoints, oldest first."""
        return self.checkpoints_in(self.job_dir(run_id, job_id))

    def checkpoints_in(self, d: str) -> list[tuple[int, int, str]]:
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(d, detail=False, refresh=True)]
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            m = _NAME.match(name)
            if m:
                out.append((int(m.group(1)), int(m.group(2)), f"{d}/{name}"))
        return sorted(out)

    def remove(self, path: str) -> None:
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache()  # s3fs caches listings: the next listing must not show it

    def remove_files(self, paths: list[str]) -> None:
        """Remove these files, a missing one included: on S3 one bulk DELETE, not a listing,
        a HEAD and a DELETE per file, so a child's clean-up takes one request, not dozens."""
        if not paths:
            return
        if self.local:
            for p in paths:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        else:
            self.fs.rm(list(paths))  # not recursive: nothing is listed first
        self.fs.invalidate_cache()

    def size(self, path: str) -> int:
        try:
            return int(self.fs.du(path)) if self.fs.exists(path) else 0
        except FileNotFoundError:
            return 0

    def jobs_of_run(self, run_id: int) -> list[int]:
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.run_dir(run_id), detail=False, refresh=True)]
        except FileNotFoundError:
            return []
        return sorted(int(n[4:]) for n in names if n.startswith("job-") and n[4:].isdigit())


@dataclass
class ChildCheckpoints:
    """What the runner hands the trainer: where this attempt saves, what it may resume from.

    ``every``: save after every N epochs; 0 = never; None = auto (every epoch for a final
    training; for a search child only when its first epoch took longer than ``auto_seconds``).
    """

    store: CheckpointStore
    run_id: int
    job_id: int
    attempt: int
    kind: str
    every: int | None
    auto_seconds: float = 60.0
    on_resume: Callable[[int], None] | None = None
    keep: int = 2  # this attempt's newest checkpoints kept while training (the previous stays intact)
    dir: str | None = None  # instead of the job's directory (`pnas train`)
    resumed_epoch: int | None = None
    resumed_from: str | None = None  # the checkpoint `latest` found
    skipped: list[str] = field(default_factory=list)
    force_epoch: int | None = None  # a multi-fidelity rung's end: saved whatever ``every`` says

    @property
    def where(self) -> str:
        return self.dir or self.store.job_dir(self.run_id, self.job_id)

    def should_save(self, epoch: int, first_epoch_seconds: float | None) -> bool:
        if epoch == self.force_epoch:
            return True
        every = self.every
        if every is None:
            every = 1 if self.kind == "final" or (first_epoch_seconds or 0.0) > self.auto_seconds else 0
        return every > 0 and epoch % every == 0

    def save(self, blob: bytes, epoch: int) -> bool:
        """Write this attempt's checkpoint for ``epoch``; a failed write (a full disk) is
        reported and training goes on (the previous checkpoint is still there)."""
        d = self.where
        try:
            self.store.write(f"{d}/a{self.attempt}-e{epoch:05d}.ckpt", blob)
        except OSError as exc:
            log.warning("job %s: checkpoint of epoch %s not written (%s); training goes on", self.job_id, epoch, exc)
            return False
        mine = [p for a, _e, p in self.store.checkpoints_in(self.where) if a == self.attempt]
        self.store.remove_files(mine[: -self.keep])
        return True

    def candidates(self) -> list[tuple[int, int, str]]:
        """Checkpoints of earlier attempts, newest epoch first. Every one there is: an attempt
        starts with none of its own, and a handed-back attempt's number is given out again."""
        found = self.store.checkpoints_in(self.where)
        return sorted(found, key=lambda c: (c[1], c[0]), reverse=True)

    def latest(self, identity: dict, check: Callable[[Checkpoint], None] | None = None) -> Checkpoint | None:
        """The newest readable checkpoint of an earlier attempt; unreadable ones are reported
        (``skipped``) and passed over. ``check`` may raise `CheckpointUnreadable` too."""
        for _a, _e, path in self.candidates():
            try:
                ck = decode(self.store.read(path), identity)
                if check is not None:
                    check(ck)
            except (CheckpointUnreadable, OSError) as exc:
                msg = f"checkpoint {path} skipped: {exc}"
                log.warning("job %s: %s", self.job_id, msg)
                self.skipped.append(msg)
                continue
            self.resumed_from = path
            return ck
        return None

    def resumed(self, epoch: int) -> None:
        self.resumed_epoch = epoch
        if self.on_resume is not None:
            self.on_resume(epoch)

    # --- the ends of an attempt ---------------------------------------------------------
    def succeeded(self) -> None:
        """A search child's checkpoints go, every attempt's; a final training keeps its newest
        as final.ckpt. The runner calls this after the success is recorded (a success it could
        not record leaves them to the attempt that owns the job), so they go a moment later."""
        mine = self.store.checkpoints_in(self.where)
        if self.kind == "final" and mine:
            newest = max(mine, key=lambda c: (c[1], c[0]))[2]
            self.store.write(f"{self.where}/{FINAL_NAME}", self.store.read(newest))
        self.store.remove_files([p for _a, _e, p in mine])

    def paused(self) -> None:
        """A multi-fidelity child stopped at a rung: only its newest checkpoint stays (the
        rung's end), for the attempt that continues it if the controller promotes it. `pnas gc`
        removes it once its level is done."""
        found = self.candidates()
        self.store.remove_files([p for _a, _e, p in found[1:]])

    def failed_for_good(self) -> None:
        """A final failure (NaN, cannot build): nothing of this attempt is resumed later."""
        self.store.remove_files([p for a, _e, p in self.store.checkpoints_in(self.where) if a == self.attempt])


def gc_run(store: CheckpointStore, run_id: int, states: dict[int, tuple[str, str]]) -> tuple[int, int]:
    """Remove what run ``run_id`` no longer needs: checkpoints of jobs that are not queued,
    running or lost (their next attempt may resume), and of jobs the store does not know.
    Final trainings' ``final.ckpt`` stay. ``states``: job id -> (state, kind); the state
    "paused" (a multi-fidelity child stopped at a rung of a level still training) keeps them.
    Returns (files removed, bytes freed)."""
    removed = freed = 0
    for job_id in store.jobs_of_run(run_id):
        state, _kind = states.get(job_id, ("unknown", "search"))
        if state in ("queued", "running", "lost", "paused"):
            continue
        for _a, _e, p in store.checkpoints(run_id, job_id):
            freed += store.size(p)
            store.remove(p)
            removed += 1
    return removed, freed
