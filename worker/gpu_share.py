"""k children on one GPU: each worker's memory share, and out-of-memory retries with more room.

`pnas worker` leases one of the ``k`` slots of a GPU (worker/gpu_slot.py,
PNAS_CHILDREN_PER_GPU = k) and passes the slot to its pool processes in PNAS_GPU_SHARE. Each
pool process trains one child; before TensorFlow touches the GPU it

1. asks Redis for room on its GPU (`Gate.admit`): a child normally needs 1 of the k shares;
   a child that ran out of memory before needs twice the shares it had (at most k: alone);
2. caps TensorFlow's memory at its shares (`limit_tensorflow_memory`);
3. trains; an out-of-memory (`ChildOutOfMemory`, a retryable failure) records the larger
   need in Redis, so the retry, on whichever worker takes it, waits for that much room.

Why a logical-device memory limit and not memory growth alone: memory growth caps nothing.
The first child to grow keeps what it took (TensorFlow never hands memory back, and XLA's
autotuner tries convolution algorithms with large scratch buffers), so the others fail at
random moments. A limit (`tf.config.set_logical_device_configuration(memory_limit=...)`) is
enforced by TensorFlow's BFC allocator, through which XLA-compiled clusters allocate too, so
it holds with ``jit_compile``; `pnas worker` keeps TF_FORCE_GPU_ALLOW_GROWTH so a process
takes its share as it needs it rather than all at start. What the limit cannot cover (the
CUDA context, cuDNN/cuBLAS handles) is taken off first: PNAS_GPU_OVERHEAD_MB per process.
With k = 1 nothing is capped (one child owns the GPU, as before).

Room on a GPU, in Redis (``scope`` = PNAS_NODE, ``device`` = the GPU id):
- ``pnas:gpu-busy:<scope>:<device>:<slot>`` = shares in use by the child training on that
  slot, with an expiry renewed while it trains (a killed process frees its room);
- ``pnas:gpu-reserve:<scope>:<device>`` = the token of a child waiting for more than one
  share: while it is set no other child starts on that GPU, so the room it waits for comes;
- ``pnas:gpu-need:<queue>:<job id>`` = shares a job needs next (set after an out-of-memory).
Admission is one Lua script (atomic): no reservation by another, and the shares in use plus
those asked for fit in k.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import redis

from shared.errors import ChildOutOfMemory

log = logging.getLogger("pnas.worker")

ENV = "PNAS_GPU_SHARE"  # JSON of `Share`, set by `pnas worker` on a leased slot
NEED_TTL = 7 * 24 * 3600  # a job's recorded need outlives any search level

_ADMIT = """
local r = redis.call('get', KEYS[1])
if r and r ~= ARGV[1] then return 0 end
local need, k = tonumber(ARGV[2]), tonumber(ARGV[3])
local load = 0
for j = 2, #KEYS do
  local v = redis.call('get', KEYS[j])
  if v then load = load + tonumber(v) end
end
if load + need > k then return 0 end
redis.call('set', KEYS[tonumber(ARGV[5]) + 2], ARGV[2], 'px', ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Share:
    """Which slot of which GPU a worker holds, and how the GPU's memory is split."""

    scope: str
    device: str
    slot: int
    k: int
    total_mb: int | None  # the GPU's memory (nvidia-smi); None: unknown, nothing is capped
    overhead_mb: int = 1024

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict | None = None) -> "Share | None":
        raw = (environ if environ is not None else os.environ).get(ENV)
        return cls(**json.loads(raw)) if raw else None

    def limit_mb(self, shares: int) -> int | None:
        """TensorFlow's memory cap for ``shares`` of the k; None = no cap (k = 1 or unknown)."""
        if self.k == 1 or not self.total_mb:
            return None
        return memory_limit_mb(self.total_mb, self.k, shares, self.overhead_mb)


def memory_limit_mb(total_mb: int, k: int, shares: int, overhead_mb: int) -> int:
    """``shares``/k of what k processes leave of ``total_mb`` after their overhead."""
    usable = total_mb - k * overhead_mb
    if usable <= 0:
        raise ValueError(
            f"{k} workers x {overhead_mb} MiB overhead do not fit in {total_mb} MiB: lower PNAS_CHILDREN_PER_GPU"
        )
    return max(1, usable * min(shares, k) // k)


def gpu_memory_mb(device: str) -> int | None:
    """Total memory of GPU ``device`` in MiB, asked of the driver (nvidia-smi), not of CUDA."""
    import subprocess

    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", device],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return int(res.stdout.strip().splitlines()[0]) if res.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def limit_tensorflow_memory(limit_mb: int | None, *, device_type: str = "GPU") -> str:
    """Cap TensorFlow's memory on every visible ``device_type`` device; what was done, in words.

    Must run before TensorFlow initialises its devices (RuntimeError otherwise). TensorFlow
    refuses a memory limit on CPU devices (ValueError): there the limit is reported as not
    applied and training goes on unlimited.
    """
    if limit_mb is None:
        return "no memory cap (one child per GPU, or the GPU's memory is unknown)"
    import tensorflow as tf

    devices = tf.config.list_physical_devices(device_type)
    if not devices:
        return f"no {device_type} visible: no memory cap"
    for dev in devices:
        try:
            tf.config.set_logical_device_configuration(dev, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mb)])
        except RuntimeError as exc:
            raise RuntimeError(f"the memory cap must be set before TensorFlow initialises {dev.name}: {exc}") from None
        except ValueError as exc:
            return f"memory cap of {limit_mb} MiB not applied on {dev.name}: {exc}"
    return f"TensorFlow memory capped at {limit_mb} MiB on {', '.join(d.name for d in devices)}"


_current: dict = {}  # what this process was admitted with: {"shares", "k", "limit_mb"}


def current_allowance() -> dict:
    """The shares, k and memory cap of the child this process trains ({} outside a share)."""
    return dict(_current)


class Gate:
    """Room on one GPU for the child of one pool process, through Redis."""

    def __init__(self, client: redis.Redis, share: Share, *, queue: str, ttl: float = 60.0, poll: float = 1.0) -> None:
        self.client, self.share, self.queue, self.ttl, self.poll = client, share, queue, ttl, poll
        self.token = f"{os.getpid()}:{uuid.uuid4().hex[:8]}"
        base = f"{share.scope}:{share.device}"
        self.reserve_key = f"pnas:gpu-reserve:{base}"
        self.busy_keys = [f"pnas:gpu-busy:{base}:{j}" for j in range(share.k)]
        self._admit = client.register_script(_ADMIT)

    def need_key(self, job_id: int) -> str:
        return f"pnas:gpu-need:{self.queue}:{job_id}"

    def need(self, job_id: int) -> int:
        raw = self.client.get(self.need_key(job_id))
        return max(1, min(self.share.k, int(raw))) if raw else 1

    def record_oom(self, job_id: int, shares: int) -> int:
        """The job ran out of memory with ``shares``: its retry needs twice as many (<= k)."""
        nxt = min(self.share.k, shares * 2)
        self.client.set(self.need_key(job_id), nxt, ex=NEED_TTL)
        return nxt

    def forget(self, job_id: int) -> None:
        self.client.delete(self.need_key(job_id))

    def load(self) -> int:
        return sum(int(v) for v in self.client.mget(self.busy_keys) if v)

    def _try(self, shares: int) -> bool:
        px = int(self.ttl * 1000)
        args: list[str | int] = [self.token, shares, self.share.k, px, self.share.slot]
        return bool(self._admit(keys=[self.reserve_key, *self.busy_keys], args=args))

    @contextmanager
    def admitted(self, shares: int, *, say: Callable[[str], None] = lambda _m: None) -> Iterator[int]:
        """Wait until ``shares`` fit on the GPU, hold them (renewed) inside the block."""
        px = int(self.ttl * 1000)
        reserved, said = False, False
        try:
            while True:
                if shares > 1 and not reserved:
                    reserved = bool(self.client.set(self.reserve_key, self.token, nx=True, px=px))
                if self._try(shares):
                    break
                if not said:
                    said = True
                    say(f"waiting for {shares} of {self.share.k} shares of GPU {self.share.device} (in use: {self.load()})")
                if reserved:
                    self.client.pexpire(self.reserve_key, px)
                time.sleep(self.poll)
        finally:
            if reserved and self.client.get(self.reserve_key) == self.token.encode():
                self.client.delete(self.reserve_key)  # our shares count from now on
        busy = self.busy_keys[self.share.slot]
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.ttl / 3):
                try:
                    self.client.pexpire(busy, px)
                except redis.RedisError as exc:
                    log.warning("could not renew the GPU share of slot %s: %s", self.share.slot, exc)

        keeper = threading.Thread(target=renew, name="gpu-share-keepalive", daemon=True)
        keeper.start()
        try:
            yield shares
        finally:
            stop.set()
            try:
                self.client.delete(busy)
            except redis.RedisError as exc:  # it expires within ttl
                log.warning("could not free the GPU share of slot %s: %s", self.share.slot, exc)


def guard(trainer: Callable, job_id: int, share: Share, client: redis.Redis, *, queue: str, ttl: float = 60.0) -> Callable:
    """``trainer`` run with a GPU share: admitted, memory-capped, out-of-memory recorded."""
    gate = Gate(client, share, queue=queue, ttl=ttl)

    def run(cell, train, *args, log: Callable[[str], None] | None = None, **kwargs):
        say = log or (lambda _m: None)
        shares = gate.need(job_id)
        with gate.admitted(shares, say=say):
            limit = share.limit_mb(shares)
            what = limit_tensorflow_memory(limit)
            _current.update(shares=shares, k=share.k, limit_mb=limit)
            say(f"GPU {share.device} slot {share.slot + 1}/{share.k}: {shares} share(s); {what}")
            try:
                result = trainer(cell, train, *args, log=log, **kwargs)
            except ChildOutOfMemory as exc:
                nxt = gate.record_oom(job_id, shares)
                raise ChildOutOfMemory(
                    f"{exc} (with {shares} of {share.k} shares of the GPU; the retry waits for {nxt})"
                ) from None
        gate.forget(job_id)
        result.extra["gpu_shares"] = f"{shares}/{share.k}"
        return result

    return run
