"""GPU slot leasing against the real Redis: one slot per replica, expiry, renewal, release.

Each test uses its own scope (PNAS_NODE), so nothing is flushed and tests do not collide.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from shared.settings import Settings
from tests.conftest import REDIS_URL
from tests.integration.cluster import redis_or_fail
from worker.gpu_slot import LEASE_LOST_EXIT, GpuSlots, HeldSlot, KeepAlive, hold_slot, parse_slots

pytestmark = pytest.mark.integration


@pytest.fixture
def client():
    c = redis_or_fail(REDIS_URL)
    scopes: list[str] = []
    c.scopes = scopes
    yield c
    for scope in scopes:
        for key in c.scan_iter(f"pnas:gpu-slot:{scope}:*"):
            c.delete(key)
    c.close()


def _slots(client, devices, ttl=5.0) -> GpuSlots:
    scope = f"test-{uuid.uuid4().hex[:8]}"
    client.scopes.append(scope)
    return GpuSlots(client, devices=devices, scope=scope, ttl=ttl)


def test_parse_slots() -> None:
    assert parse_slots("3") == ["0", "1", "2"]
    assert parse_slots(" 0,2 ,3") == ["0", "2", "3"]
    assert parse_slots("auto", discover=lambda: ["0", "1"]) == ["0", "1"]
    with pytest.raises(ValueError):
        parse_slots("gpu0")


def test_each_replica_gets_a_different_slot_until_none_is_left(client) -> None:
    slots = _slots(client, ["0", "1", "2"])
    leases = [slots.acquire(owner=f"replica{i}") for i in range(3)]
    assert sorted(lease.device for lease in leases) == ["0", "1", "2"]
    assert slots.acquire(owner="replica3") is None  # a race lost is a value
    assert leases[1].release()
    again = slots.acquire(owner="replica4")
    assert again is not None and again.device == leases[1].device
    assert not leases[1].release()  # no longer ours: the new holder keeps it
    assert slots.holders()[again.device] == again.token


def test_concurrent_processes_never_share_a_slot(client) -> None:
    """Eight processes race for four slots: four win, each a different one."""
    slots = _slots(client, ["0", "1", "2", "3"], ttl=30)
    code = textwrap.dedent(
        f"""
        import redis, sys
        from worker.gpu_slot import GpuSlots
        s = GpuSlots(redis.Redis.from_url({REDIS_URL!r}), devices=["0", "1", "2", "3"], scope={slots.scope!r}, ttl=30)
        lease = s.acquire()
        print(lease.device if lease else "none")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        for _ in range(8)
    ]
    got = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert got == ["0", "1", "2", "3"] + ["none"] * 4


def test_a_dead_holder_frees_its_slot_after_the_ttl_and_renewal_keeps_it(client) -> None:
    slots = _slots(client, ["0"], ttl=1.0)
    dead = slots.acquire(owner="dead")  # never renewed
    alive_slots = _slots(client, ["0"], ttl=1.0)
    alive = alive_slots.acquire(owner="alive")
    keep = KeepAlive(alive, on_lost=lambda: pytest.fail("a renewed lease was lost")).start()
    try:
        time.sleep(2.0)  # twice the ttl
        assert slots.acquire(owner="successor") is not None, "the dead holder's slot did not expire"
        assert alive_slots.acquire(owner="intruder") is None, "the renewed slot expired"
        assert dead is not None and not dead.renew()  # taken meanwhile: no longer ours
    finally:
        keep.stop()


def test_renew_takes_back_a_slot_that_vanished_but_reports_one_taken(client) -> None:
    slots = _slots(client, ["0"], ttl=5)
    lease = slots.acquire(owner="a")
    client.delete(lease.key)  # Redis lost it (restart without persistence)
    assert lease.renew() and slots.holders()["0"] == lease.token
    client.set(lease.key, "someone-else")
    assert not lease.renew()
    lost: list[bool] = []
    keep = KeepAlive(lease, on_lost=lambda: lost.append(True), interval=0.05).start()
    time.sleep(0.5)
    keep.stop()
    assert lost == [True]  # called once


def test_held_slot_runs_the_worker_on_its_gpu_and_releases_at_exit(client) -> None:
    scope = f"test-{uuid.uuid4().hex[:8]}"
    client.scopes.append(scope)
    settings = Settings(broker_url=REDIS_URL, gpu_slots="0,1", node=scope, gpu_slot_ttl=5)
    first, second = hold_slot(settings), hold_slot(settings)
    assert {first.device, second.device} == {"0", "1"}
    child_env = dict(os.environ, CUDA_VISIBLE_DEVICES=first.device)
    rc = first.run([sys.executable, "-c", "import os, sys; sys.exit(10 + int(os.environ['CUDA_VISIBLE_DEVICES']))"], child_env)
    assert rc == 10 + int(first.device)
    slots = GpuSlots(client, devices=["0", "1"], scope=scope)
    assert slots.holders()[first.device] is None  # released at exit
    assert slots.holders()[second.device] == second.lease.token
    second.close()
    assert slots.holders()[second.device] is None


def test_held_slot_stops_the_worker_when_the_slot_is_taken(client) -> None:
    slots = _slots(client, ["0"], ttl=0.6)
    held = HeldSlot(slots.acquire(owner="victim"))  # renewed every 0.2 s
    client.set(held.lease.key, "usurper")  # what another replica does after an expiry
    start = time.monotonic()
    rc = held.run([sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ))
    assert rc == LEASE_LOST_EXIT
    assert time.monotonic() - start < 10  # SIGTERM reached the worker
    assert client.get(held.lease.key) == b"usurper"  # never released someone else's slot
