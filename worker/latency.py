"""Measure a latency table (`shared.latency`) on this machine with the worker's own layers.

Every piece is built as a small Keras model from `worker.ops` (the code `worker.network`
builds children with) and timed as `time_model` times a whole network: one compiled call
(`tf.function`, no XLA) on a batch of 1, ``repeats`` times after ``warmup`` calls, the
median taken. A piece's entry is what one more copy of it adds inside a model: the time of
two copies side by side (after a 1x1 convolution of the input, the prefix, and added up)
less that of one. A lone piece's time would also carry the call's fixed cost and what only
the first of its operations pays in a call, which a network pays once (``overhead_ms``: the
prefix alone on the network's input), not once per piece (measured: about twice the sum).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Callable, Sequence

import keras
import numpy as np
from keras import layers

from shared.latency import LatencyTable, network_settings, table_pieces
from shared.space.cost import NetworkSpec, Piece
from worker.ops import OPS, Ctx, factorized_reduction

REPEATS = 30  # timed calls per piece: the median of 30 shrugs off a few calls slowed by other load
WARMUP = 5  # untimed calls first: tracing, allocation, caches


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time


def time_model(model: keras.Model, *, repeats: int = REPEATS, warmup: int = WARMUP, clock: str = "wall") -> float:
    """Median ms of one inference call of ``model`` on a batch of 1 (random inputs).

    ``clock="cpu"`` times the process's CPU time instead of the wall clock: on a machine that
    other work shares, the time the process waits for a core is left out (with one TensorFlow
    thread, `set_threads(1)`, it is the latency an idle single core would see).
    """
    import tensorflow as tf

    now = CLOCKS[clock]
    rng = np.random.default_rng(0)
    xs = [tf.constant(rng.standard_normal((1, *i.shape[1:])).astype("float32")) for i in model.inputs]
    fn = tf.function(lambda *a: model(list(a) if len(a) > 1 else a[0], training=False), jit_compile=False)
    for _ in range(warmup):
        _ = tf.nest.map_structure(lambda t: t.numpy(), fn(*xs))
    times = []
    for _ in range(repeats):
        t0 = now()
        _ = tf.nest.map_structure(lambda t: t.numpy(), fn(*xs))  # .numpy(): the result is there
        times.append((now() - t0) * 1000)
    return statistics.median(times)


def piece_model(piece: Piece | None, shape: tuple[int, int, int], copies: int = 1) -> keras.Model:
    """A 1x1 convolution (the prefix) then ``copies`` of one piece side by side on its output,
    added up (None: the prefix alone), built with the layers `worker.network` uses."""
    inp = keras.Input(shape=shape, batch_size=1)
    x = layers.Conv2D(shape[2], 1, use_bias=False, name="prefix")(inp)
    if piece is None:
        return keras.Model(inp, x)
    outs = [_piece(Ctx(), piece, x, f"c{i}") for i in range(copies)]
    return keras.Model(inp, outs[0] if copies == 1 else layers.Add()(outs))


def _piece(ctx: Ctx, piece: Piece, x, p: str):
    k = piece.kind
    if k in OPS:
        y = OPS[k](ctx, x, piece.cout, piece.stride, p)
    elif k == "project":
        y = ctx.relu_conv_bn(x, piece.cout, p)
    elif k == "factorized":
        y = factorized_reduction(ctx, ctx.relu(x, p), piece.cout, p)
    elif k == "stem_cifar":
        y = ctx.bn(ctx.conv(x, piece.cout, 3, p), p)
    elif k == "stem_imagenet":
        y = layers.Conv2D(piece.cout, 3, strides=2, padding="valid", use_bias=False, name=ctx.name(f"{p}.conv"))(x)
        y = ctx.bn(y, p)
    elif k == "head":
        y = layers.GlobalAveragePooling2D()(layers.ReLU()(x))
        y = layers.Dense(piece.cout, activation="softmax", dtype="float32")(y)
    elif k == "join":  # b block outputs (each the sum of two ops' outputs), concatenated
        adds = [layers.Add()([x, x]) for _ in range(piece.cout // piece.cin)]
        y = adds[0] if len(adds) == 1 else layers.Concatenate()(adds)
    else:
        raise ValueError(f"no model for piece {piece.kind!r}")
    return layers.Identity()(x) if y is x else y  # an identity that changes nothing: no layer


def set_threads(n: int) -> None:
    """Run TensorFlow's ops on n threads (both pools); before TensorFlow runs anything."""
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(n)
    tf.config.threading.set_intra_op_parallelism_threads(n)


def threads() -> str:
    import tensorflow as tf

    n = tf.config.threading.get_intra_op_parallelism_threads()
    return f"{n} TensorFlow thread{'s' if n != 1 else ''}" if n else "TensorFlow's default threads"


def machine() -> str:
    """The measuring machine in a few words: CPU, core count, any GPU."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]  # fmt: skip
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()}" + (f", GPU {', '.join(gpus)}" if gpus else "")


def measure_table(
    spec: NetworkSpec,
    ops: Sequence[str],
    blocks: int,
    *,
    device: str,
    repeats: int = REPEATS,
    warmup: int = WARMUP,
    clock: str = "wall",
    progress: Callable[[int, int], None] | None = None,
) -> LatencyTable:
    """Time every piece of the networks of 1..``blocks``-block cells (`shared.latency.table_pieces`)."""
    import tensorflow as tf

    pieces = table_pieces(spec, ops, blocks)
    def ms(piece: Piece | None, shape: tuple[int, int, int], copies: int = 1) -> float:
        return time_model(piece_model(piece, shape, copies), repeats=repeats, warmup=warmup, clock=clock)

    overhead = ms(None, spec.input_shape)  # a call and its first convolution, once per network
    entries = {}
    for i, p in enumerate(pieces):
        shape = (p.h, p.w, p.cin)
        if p.kind == "identity" and p.cin == p.cout and p.stride == 1:
            entries[p.key] = 0.0  # no layer at all in the network
        else:
            entries[p.key] = round(max(ms(p, shape, 2) - ms(p, shape), 0.0), 5)  # what one more copy adds
        keras.backend.clear_session()  # thousands of small models: keep the graph small
        if progress:
            progress(i + 1, len(pieces))
    return LatencyTable(
        device=device,
        machine=machine(),
        tensorflow=tf.__version__,
        network=network_settings(spec, ops, blocks),
        overhead_ms=round(overhead, 5),
        entries=entries,
        batch_size=1,
        statistic=f"median of {repeats} calls after {warmup} warm-up calls ({clock} clock, {threads()}), tf.function, float32",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
