"""GPU slot leasing: each worker replica takes one free GPU before TensorFlow loads.

`docker compose up --scale worker=N` gives every replica the same devices (with
``count: 1`` all of them get GPU 0: docker/compose#11863) and no replica index. So the
compose file reserves all GPUs for every replica, and each replica leases one slot here
and sets ``CUDA_VISIBLE_DEVICES`` to it.

A slot is a Redis key ``pnas:gpu-slot:<scope>:<device>`` set with NX and an expiry; its
value is this replica's token. A small thread renews the expiry; the lease is released on
exit. A replica that dies without releasing (SIGKILL, power) frees its slot when the key
expires, ``ttl`` seconds later. ``scope`` names the machine whose GPUs are shared: set
PNAS_NODE to a different value on each host when several hosts share one Redis.

Contract:
- `parse_slots` turns PNAS_GPU_SLOTS (``auto``, a count ``4``, or device ids ``0,2,3``)
  into device ids; ``auto`` asks the driver (``nvidia-smi``) without loading CUDA.
- `GpuSlots.acquire` returns a `Lease` or None when every slot is taken (a race is a
  value, not an exception); `GpuSlots.wait` polls until one is free.
- `Lease.renew` returns False when the slot is no longer ours (expired and taken by
  another replica); `KeepAlive` then calls its ``on_lost`` callback once.
- `hold_slot` waits for a free slot and keeps it alive from then on (the TensorFlow
  probe may take longer than the ttl); `HeldSlot.run` runs the worker as a child process
  under it, passes stop signals on, and releases the slot when the child exits.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import redis

from shared.errors import UserError
from shared.settings import Settings

log = logging.getLogger("pnas.worker")

KEY_PREFIX = "pnas:gpu-slot"

# Extend the expiry only if the key still holds our token; 1 if renewed, 0 if not ours.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Delete the key only if it still holds our token.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def visible_gpus() -> list[str]:
    """Device ids of the GPUs this container can use, asked of the driver, not of CUDA."""
    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode == 0:
            return [line.strip() for line in res.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    # No nvidia-smi in the container: count the device nodes the runtime mounted.
    nodes = [p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)]
    return [str(i) for i in range(len(nodes))]


def parse_slots(spec: str, *, discover: Callable[[], list[str]] = visible_gpus) -> list[str]:
    """Device ids from PNAS_GPU_SLOTS: ``auto``, a count (``4`` = 0..3) or ids (``0,2,3``)."""
    spec = spec.strip()
    if spec == "auto":
        return discover()
    if spec.isdigit():
        return [str(i) for i in range(int(spec))]
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise ValueError(f"PNAS_GPU_SLOTS takes auto, a count such as 4, or device ids such as 0,2,3 (got {spec!r})")
    return ids


@dataclass
class Lease:
    """One GPU slot held by this replica until `release` (or until its key expires)."""

    client: redis.Redis
    key: str
    device: str  # what CUDA_VISIBLE_DEVICES gets
    token: str
    ttl: float

    def renew(self) -> bool:
        """Push the expiry ``ttl`` seconds out; False if another replica holds the slot now."""
        if self.client.eval(_RENEW, 1, self.key, self.token, int(self.ttl * 1000)):
            return True
        # Expired but nobody took it (Redis restarted without its key): take it back.
        return bool(self.client.set(self.key, self.token, nx=True, px=int(self.ttl * 1000)))

    def release(self) -> bool:
        """Give the slot back; False if it was no longer ours."""
        return bool(self.client.eval(_RELEASE, 1, self.key, self.token))


class GpuSlots:
    """The GPU slots of one machine (``scope``), leased through Redis."""

    def __init__(self, client: redis.Redis, *, devices: list[str], scope: str = "default", ttl: float = 60.0) -> None:
        if not devices:
            raise ValueError("no GPU slots to lease (PNAS_GPU_SLOTS found no GPU)")
        self.client, self.devices, self.scope, self.ttl = client, list(devices), scope, ttl

    @classmethod
    def from_url(cls, url: str, **kw) -> "GpuSlots":
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10), **kw)

    def key(self, device: str) -> str:
        return f"{KEY_PREFIX}:{self.scope}:{device}"

    def holders(self) -> dict[str, str | None]:
        """device -> the token holding it (None when free); for status and tests."""
        values = self.client.mget([self.key(d) for d in self.devices])
        return {d: (v.decode() if isinstance(v, bytes) else v) for d, v in zip(self.devices, values)}

    def acquire(self, *, owner: str | None = None) -> Lease | None:
        """Take the first free slot; None when all are taken."""
        token = f"{owner or _default_owner()}:{uuid.uuid4().hex[:8]}"
        for device in self.devices:
            key = self.key(device)
            if self.client.set(key, token, nx=True, px=int(self.ttl * 1000)):
                return Lease(self.client, key, device, token, self.ttl)
        return None

    def wait(self, *, owner: str | None = None, poll: float = 5.0, timeout: float | None = None) -> Lease | None:
        """`acquire` until a slot is free (a replica that died frees its slot within ``ttl``)."""
        start, last_said = time.monotonic(), 0.0
        while True:
            lease = self.acquire(owner=owner)
            if lease is not None:
                return lease
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                return None
            if now - last_said >= 60:
                last_said = now
                log.warning(
                    "all %d GPU slots of %r are taken (more worker replicas than GPUs?); waiting for one to free",
                    len(self.devices),
                    self.scope,
                )
            time.sleep(poll)


class KeepAlive:
    """A daemon thread that renews a lease every ttl/3 s; calls ``on_lost`` once if it is lost.

    Redis errors are logged and retried on the next tick: a Redis restart shorter than the
    ttl costs nothing (and the appendonly file keeps the key across it).
    """

    def __init__(self, lease: Lease, *, on_lost: Callable[[], None], interval: float | None = None) -> None:
        self.lease, self.on_lost = lease, on_lost
        self.interval = interval if interval is not None else max(lease.ttl / 3, 0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-slot-keepalive", daemon=True)

    def start(self) -> "KeepAlive":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.lease.renew():
                    continue
            except redis.RedisError as exc:
                log.warning("could not renew GPU slot %s (%s); retrying", self.lease.device, exc)
                continue
            log.error("GPU slot %s is no longer ours (the lease expired and another replica took it)", self.lease.device)
            self.on_lost()
            return


def _default_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


LEASE_LOST_EXIT = 75  # EX_TEMPFAIL: the slot was lost; a restart leases a fresh one


class HeldSlot:
    """A lease kept alive from construction until `close`; `run` runs the worker under it."""

    def __init__(self, lease: Lease) -> None:
        self.lease, self.device = lease, lease.device
        self.lost = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self._keep = KeepAlive(lease, on_lost=self._on_lost).start()

    def _on_lost(self) -> None:
        self.lost.set()
        self._signal(signal.SIGTERM, None)  # hand the running child back, then restart

    def _signal(self, signum: int, _frame) -> None:
        if self._proc is not None:
            try:
                self._proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def run(self, argv: list[str], env: dict) -> int:
        """Run ``argv`` under the lease; its exit status (128+N if killed by signal N).

        Stop signals (SIGTERM from `docker stop`, SIGINT, SIGQUIT, SIGHUP) go to the child
        once: it runs in its own session, so a Ctrl-C at a terminal does not reach it twice.
        If the slot is lost the status is ``LEASE_LOST_EXIT``. The slot is released at exit.
        """
        try:
            if self.lost.is_set():
                return LEASE_LOST_EXIT
            self._proc = subprocess.Popen(argv, env=env, start_new_session=True)
            if self.lost.is_set():  # lost while the child was starting
                self._signal(signal.SIGTERM, None)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
                signal.signal(sig, self._signal)
            rc = self._proc.wait()
        finally:
            self.close()
        if self.lost.is_set():
            return LEASE_LOST_EXIT
        return rc if rc >= 0 else 128 - rc

    def close(self) -> None:
        """Stop renewing and give the slot back (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._keep.stop()
        try:
            self.lease.release()
        except redis.RedisError as exc:  # the key expires by itself within ttl
            log.warning("could not release GPU slot %s: %s", self.device, exc)


def hold_slot(settings: Settings) -> HeldSlot:
    """Wait for a free slot of ``settings.gpu_slots`` on ``settings.node`` and keep it alive.

    ``settings.gpu_slot_ttl`` (seconds) is how long a dead replica keeps its slot.
    """
    try:
        devices = parse_slots(settings.gpu_slots or "")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    ttl = settings.gpu_slot_ttl
    broker_url = settings.broker_url or ""
    if not devices:
        raise UserError(
            "PNAS_GPU_SLOTS=auto found no GPU (no nvidia-smi, no /dev/nvidiaN): check the container's GPU "
            "reservation, or run the worker with --gpu none"
        )
    scope = settings.node
    slots = GpuSlots.from_url(broker_url, devices=devices, scope=scope, ttl=ttl)
    try:
        lease = slots.wait()
    except redis.RedisError as exc:
        raise UserError(f"cannot lease a GPU slot in Redis at {broker_url.split('@')[-1]}: {exc}") from None
    assert lease is not None  # wait() without a timeout returns only with a lease
    print(f"leased GPU slot {lease.device} of {','.join(devices)} on node {scope!r}", file=sys.stderr, flush=True)
    return HeldSlot(lease)
