"""The checkpoint store against real storage: a directory, a tiny full tmpfs, and an S3 server
(moto's server mode on 127.0.0.1, started here). No TensorFlow: blobs are made of numpy arrays."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import s3fs

from tests.integration.cluster import free_port, wait_for
from worker.checkpoints import CheckpointStore, CheckpointUnreadable, ChildCheckpoints, decode, encode, gc_run

IDENT = {"arch_id": "abc", "filters": 8}


def blob(epoch: int, size: int = 10, ident: dict = IDENT) -> bytes:
    w = [np.full((size,), epoch, dtype="float32"), np.arange(3.0)]
    hist = [{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "seconds": 0.1} for e in range(1, epoch + 1)]
    return encode(epoch, ident, w, [np.array(epoch * 10, dtype="int64")], hist)


def test_round_trip_and_what_cannot_be_loaded():
    ck = decode(blob(3), IDENT)
    assert ck.epoch == 3 and ck.n_weights == 2 and len(ck.header["history"]) == 3
    assert ck.arrays[0].tolist() == [3.0] * 10 and int(ck.arrays[2]) == 30
    b = blob(3)
    with pytest.raises(CheckpointUnreadable, match="truncated"):
        decode(b[:-5], IDENT)
    with pytest.raises(CheckpointUnreadable, match="truncated or corrupt"):
        decode(b[:-5] + b"xxxxx", IDENT)
    with pytest.raises(CheckpointUnreadable, match="another child"):
        decode(b, {**IDENT, "filters": 16})
    with pytest.raises(CheckpointUnreadable, match="magic"):
        decode(b"garbage", IDENT)


def _exercise(store: CheckpointStore) -> None:
    """Resume from the newest readable earlier checkpoint; clean up on success."""
    a1 = ChildCheckpoints(store, 7, 42, 1, "search", 1)
    for e in (1, 2, 3):
        assert a1.save(blob(e), e)
    assert [(a, e) for a, e, _ in store.checkpoints(7, 42)] == [(1, 2), (1, 3)], "only the newest two are kept"
    # the newest is corrupted (a torn write on a store without atomic rename): skipped, reported
    newest = store.checkpoints(7, 42)[-1][2]
    store.fs.pipe_file(newest, blob(3)[:100])
    a2 = ChildCheckpoints(store, 7, 42, 2, "search", 1)
    ck = a2.latest(IDENT)
    assert ck is not None and ck.epoch == 2
    assert len(a2.skipped) == 1 and "truncated" in a2.skipped[0]
    assert a2.save(blob(4), 4)
    assert ChildCheckpoints(store, 7, 42, 3, "search", 1).latest({**IDENT, "arch_id": "other"}) is None
    a2.succeeded()
    assert store.checkpoints(7, 42) == []
    store.remove_files([f"{store.job_dir(7, 42)}/a2-e00004.ckpt"])  # gone already: no error
    # a final training keeps its last weights
    f = ChildCheckpoints(store, 7, 43, 1, "final", None)
    assert f.should_save(1, 0.1) and not ChildCheckpoints(store, 7, 44, 1, "search", None).should_save(1, 0.1)
    f.save(blob(5), 5)
    f.succeeded()
    assert store.checkpoints(7, 43) == [] and decode(store.read(f"{store.job_dir(7, 43)}/final.ckpt"), IDENT).epoch == 5
    # gc: a failed child's checkpoints go, a lost one's stay (its next attempt may resume)
    ChildCheckpoints(store, 7, 45, 1, "search", 1).save(blob(1), 1)
    ChildCheckpoints(store, 7, 46, 1, "search", 1).save(blob(1), 1)
    removed, freed = gc_run(store, 7, {45: ("failed", "search"), 46: ("lost", "search")})
    assert removed == 1 and freed > 0
    assert store.checkpoints(7, 45) == [] and len(store.checkpoints(7, 46)) == 1
    assert store.size(store.run_dir(7)) > 0


def test_directory_store(tmp_path):
    store = CheckpointStore(str(tmp_path / "ck"), database="d1")
    _exercise(store)
    assert not [p for p in (tmp_path / "ck").rglob(".tmp-*")], "no temporary files left"


def test_a_final_failure_is_never_resumed(tmp_path):
    store = CheckpointStore(str(tmp_path), database="d1")
    a1 = ChildCheckpoints(store, 1, 1, 1, "search", 1)
    a1.save(blob(2), 2)
    a1.failed_for_good()
    assert ChildCheckpoints(store, 1, 1, 2, "search", 1).latest(IDENT) is None


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KB tmpfs (we run as root here; elsewhere this test says why it cannot run)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.fail("the full-disk test mounts a tmpfs and needs root", pytrace=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_keeps_the_previous_checkpoint(tiny_tmpfs):
    store = CheckpointStore(str(tiny_tmpfs), database="d1")
    a1 = ChildCheckpoints(store, 1, 1, 1, "search", 1)
    assert a1.save(blob(1, size=1000), 1)
    assert not a1.save(blob(2, size=200_000), 2), "800 KB cannot fit in 256 KB"
    assert [e for _a, e, _p in store.checkpoints(1, 1)] == [1]
    assert not list(tiny_tmpfs.rglob(".tmp-*")), "the torn temporary file is removed"
    assert ChildCheckpoints(store, 1, 1, 2, "search", 1).latest(IDENT).epoch == 1


@pytest.fixture
def moto_s3(tmp_path, monkeypatch):
    """moto's S3 server on 127.0.0.1, and the environment boto reads its endpoint from."""
    port = free_port()
    log = open(tmp_path / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        import urllib.request

        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1), timeout=30, what="moto server")
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket="pnas-ck")
        yield env
    finally:
        proc.kill()
        proc.wait(timeout=10)
        # fsspec keeps one S3FileSystem per set of arguments, bound to this server's endpoint:
        # a later test's server must not be reached through it
        s3fs.S3FileSystem.clear_instance_cache()


def test_s3_store(moto_s3):
    import fsspec

    fsspec.config.conf.pop("s3", None)
    store = CheckpointStore("s3://pnas-ck/checkpoints", database="d1")
    assert not store.local
    _exercise(store)
    t0 = time.perf_counter()
    store.write(f"{store.root}/x", blob(1))
    assert decode(store.read(f"{store.root}/x"), IDENT).epoch == 1 and time.perf_counter() - t0 < 30
