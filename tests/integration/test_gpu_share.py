"""k workers per GPU against the real Redis: slot counting, admission, memory caps, OOM retries.

No GPU here: the leases and the admission protocol are the same on a CPU machine; the memory
cap is checked as far as TensorFlow's CPU devices allow; the out-of-memory retry runs through
real `pnas worker` processes with a fake trainer that runs out of memory unless alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter

import pytest
import redis

from shared.settings import Settings
from shared.store import Store
from tests.conftest import REDIS_URL, ROOT
from tests.integration.cluster import base_env, redis_or_fail, wait_for
from worker.gpu_share import Gate, Share, memory_limit_mb
from worker.gpu_slot import GpuSlots, hold_slot

pytestmark = pytest.mark.integration


@pytest.fixture
def client():
    c = redis_or_fail(REDIS_URL)
    scope = f"test-{uuid.uuid4().hex[:8]}"
    c.scope = scope
    yield c
    for pattern in (f"pnas:gpu-*:{scope}:*", f"pnas:gpu-need:{scope}:*"):
        for key in c.scan_iter(pattern):
            c.delete(key)
    c.close()


def test_k_slots_per_device_fill_the_least_crowded_gpu_first(client) -> None:
    slots = GpuSlots(client, devices=["0", "1"], scope=client.scope, ttl=30, per_device=3)
    leases = [slots.acquire(owner=f"r{i}") for i in range(6)]
    assert all(lease is not None for lease in leases)
    assert [lease.device for lease in leases[:2]] == ["0", "1"], "the second replica goes to the idle GPU"
    assert Counter(lease.device for lease in leases) == {"0": 3, "1": 3}
    assert len({lease.key for lease in leases}) == 6 and {lease.slot for lease in leases} == {0, 1, 2}
    assert slots.acquire(owner="r6") is None
    assert leases[4].release()  # a slot of GPU 0 frees: the next replica gets exactly that one
    again = slots.acquire(owner="r7")
    assert (again.device, again.slot) == (leases[4].device, leases[4].slot)
    assert {d: len(t) for d, t in slots.taken().items()} == {"0": 3, "1": 3}
    with pytest.raises(ValueError):
        GpuSlots(client, devices=["0"], per_device=0)


def test_competing_processes_get_k_slots_per_gpu_each_once(client) -> None:
    """Eleven processes race for 2 GPUs x 4 slots: eight win, four per GPU, no slot twice."""
    code = textwrap.dedent(
        f"""
        import redis
        from worker.gpu_slot import GpuSlots
        s = GpuSlots(redis.Redis.from_url({REDIS_URL!r}), devices=["0", "1"], scope={client.scope!r}, ttl=30, per_device=4)
        lease = s.acquire()
        print(f"{{lease.device}}/{{lease.slot}}" if lease else "none")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(11)
    ]
    got = [p.communicate(timeout=120)[0].strip() for p in procs]
    won = [g for g in got if g != "none"]
    assert len(won) == 8 and len(set(won)) == 8, got
    assert Counter(w.split("/")[0] for w in won) == {"0": 4, "1": 4}


def test_hold_slot_reads_children_per_gpu_from_the_settings(client) -> None:
    settings = Settings(broker_url=REDIS_URL, gpu_slots="1", node=client.scope, gpu_slot_ttl=10, children_per_gpu=2)
    a, b = hold_slot(settings), hold_slot(settings)
    try:
        assert (a.device, b.device) == ("0", "0") and {a.lease.slot, b.lease.slot} == {0, 1}
        assert a.lease.per_device == 2
    finally:
        a.close()
        b.close()


def test_memory_limit_is_shared_out_after_the_overhead() -> None:
    assert memory_limit_mb(143_771, 4, 1, 1024) == (143_771 - 4096) // 4
    assert memory_limit_mb(143_771, 4, 4, 1024) == 143_771 - 4096  # alone
    assert memory_limit_mb(80_000, 8, 16, 1000) == 72_000  # never more than the whole
    with pytest.raises(ValueError, match="PNAS_CHILDREN_PER_GPU"):
        memory_limit_mb(8_000, 8, 1, 1024)
    share = Share(scope="s", device="0", slot=0, k=1, total_mb=80_000)
    assert share.limit_mb(1) is None  # one child per GPU: nothing capped, as before
    assert Share.from_env({"PNAS_GPU_SHARE": share.to_env()}) == share


def test_memory_cap_code_path_on_tensorflow_cpu_devices() -> None:
    """In a fresh process: no GPU -> no cap; CPU devices refuse a cap (reported, not raised),
    before and after TensorFlow initialised them. (The RuntimeError for a GPU cap set too late
    needs a GPU: bench/gpu_suite.py part 3 sets real caps.)"""
    code = textwrap.dedent(
        """
        import json
        from worker.gpu_share import limit_tensorflow_memory
        out = [limit_tensorflow_memory(4096), limit_tensorflow_memory(None),
               limit_tensorflow_memory(512, device_type="CPU")]
        import tensorflow as tf
        tf.constant(1.0) + 1  # initialises the devices
        out.append(limit_tensorflow_memory(512, device_type="CPU"))
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    no_gpu, none, cpu, late = json.loads(res.stdout.strip().splitlines()[-1])
    assert no_gpu == "no GPU visible: no memory cap"
    assert none.startswith("no memory cap")
    assert "not applied on /physical_device:CPU:0" in cpu and "not supported" in cpu
    assert "not applied on /physical_device:CPU:0" in late


def _gate(client, slot: int, k: int = 2) -> Gate:
    share = Share(scope=client.scope, device="0", slot=slot, k=k, total_mb=10_000, overhead_mb=100)
    return Gate(client, share, queue=client.scope, ttl=5, poll=0.05)


def test_a_child_needing_two_shares_waits_for_room_and_blocks_newcomers(client) -> None:
    first, big, newcomer = _gate(client, 0, k=3), _gate(client, 1, k=3), _gate(client, 2, k=3)
    events: list[str] = []
    with first.admitted(1):
        with newcomer.admitted(1):
            assert first.load() == 2

            def wait_big() -> None:
                with big.admitted(2):
                    events.append(f"big in, load {big.load()}")
                    time.sleep(0.3)
                events.append("big out")

            t = threading.Thread(target=wait_big)
            t.start()
            time.sleep(0.3)
            assert events == [], "two shares do not fit beside two busy ones out of three"
            wait_for(lambda: client.exists(big.reserve_key) == 1, timeout=5, what="the reservation")
        # the newcomer's slot is free, but the reservation (or the big child) keeps it off the GPU
        assert not newcomer._try(1)
        t.join(timeout=10)
    assert events == ["big in, load 3", "big out"]
    assert first.load() == 0 and not client.exists(big.reserve_key)
    with newcomer.admitted(1):  # room again
        assert newcomer.load() == 1


def test_out_of_memory_is_retried_alone_through_real_workers(pg_url, redis_url, make_workers, tmp_path):
    """Two `pnas worker` processes share one GPU (k = 2). Every child runs out of memory beside
    another and succeeds alone: each is tried twice, and no solo run overlaps another child."""
    store = Store(pg_url)
    store.ensure_schema(auto_upgrade=True)
    scope = f"test-{uuid.uuid4().hex[:8]}"
    shares_log = tmp_path / "shares.log"
    workers = make_workers(
        pg_url, redis_url, PNAS_TRAINER="tests.fakes:oom_unless_alone", PNAS_FAKE_SHARES_LOG=str(shares_log),
        PNAS_FAKE_SLEEP="0.2", PNAS_QUEUE=scope, PNAS_GPU_SLOT_TTL="10",
    )  # fmt: skip
    for slot in (0, 1):  # what `pnas worker` sets on a leased slot; --gpu none here (no GPU)
        # total_mb=None: no memory cap, so the pool processes do not load TensorFlow (the cap
        # itself is checked above); admission and the recorded need are the real ones.
        share = Share(scope=scope, device="0", slot=slot, k=2, total_mb=None)
        workers.start(1, wait_store=store, PNAS_GPU_SHARE=share.to_env())
    env = base_env(db_url=pg_url, broker_url=redis_url, tmp=tmp_path, PNAS_QUEUE=scope)
    res = subprocess.run(
        [sys.executable, "-m", "pnas.cli", "search", "--executor", "celery", "--name", "oom", "--strategy", "random",
         "--ops", "sep3x3,max3x3", "--blocks", "1", "--epochs", "1", "--dataset", "digits"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = store.jobs(store.require_run("oom").id)
    assert jobs and all(j.state == "succeeded" and j.attempts == 2 for j in jobs), [
        (j.id, j.state, j.attempts, j.error_message) for j in jobs
    ]
    runs = [line.split() for line in shares_log.read_text().splitlines()]
    solo = [(float(a), float(b)) for _, a, b, s, _k in runs if s == "2"]
    shared = [(float(a), float(b)) for _, a, b, s, _k in runs if s == "1"]
    assert len(solo) == len(jobs) and len(shared) == len(jobs)
    everything = solo + shared
    for i, (a, b) in enumerate(solo):
        beside = [(c, d) for c, d in everything if (c, d) != (a, b) and c < b and a < d]
        assert not beside, f"solo run {i} overlapped {beside}"
    assert not redis.Redis.from_url(redis_url).keys(f"pnas:gpu-need:{scope}:*"), "needs are forgotten on success"


def test_status_counts_live_workers_per_gpu() -> None:
    from pnas.commands.status import per_gpu
    from pnas.commands.worker import gpu_label

    def w(device, job=None, ago=1.0, host="h1"):
        return {"device": device, "job_id": job, "seconds_ago": ago, "hostname": host}

    workers = [
        w(gpu_label("0", 0, 2, "n1", "NVIDIA H200"), job=7), w(gpu_label("0", 1, 2, "n1", "NVIDIA H200"), host="h2"),
        w(gpu_label("1", 0, 2, "n1", "NVIDIA H200"), ago=999),  # gone: not live
        w("GPU 3: NVIDIA A100", job=8), w("cpu (--gpu none)"),
    ]  # fmt: skip
    assert per_gpu(workers, live_seconds=150) == [
        {"node": "h1", "gpu": "3", "name": "NVIDIA A100", "slots": 1, "workers": 1, "training": 1},
        {"node": "n1", "gpu": "0", "name": "NVIDIA H200", "slots": 2, "workers": 2, "training": 1},
    ]
