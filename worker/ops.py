"""The operators a block can apply, and the few pieces a cell needs around them.

Each function takes a Keras tensor and returns one with ``filters`` channels (pooling keeps
its input's channels when they already match). Details follow TF-slim's ``nasnet_utils.py``:
convolutions have no bias (a BN follows), each separable op is two stacked
ReLU -> SeparableConv -> BN with the stride on the first, and ``identity`` turns into
ReLU -> 1x1 conv -> BN when the stride or the channel count changes.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers, ops

# TF-slim's CIFAR set-up (``nasnet_cifar_arg_scope``); `TrainConfig` carries the same
# values as settings, so that a recipe (the mobile one) can change them.
BN_MOMENTUM = 0.9  # slim CIFAR: batch_norm_decay 0.9 (fast averages suit short trainings)
BN_EPSILON = 1e-5  # slim CIFAR: batch_norm_epsilon 1e-5 (Keras computes BN in float32 under mixed precision)


def slim_initializer(seed=None):
    """slim's ``variance_scaling_initializer(mode='FAN_OUT')``: factor 2, truncated normal."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="truncated_normal", seed=seed
    )


class Names:
    """Unique, readable layer names: ``cell3.b2.left.sep5x5.sep1.bn``."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, name: str) -> str:
        name = name.replace("/", ".")  # Keras forbids '/' in layer names
        out, k = name, 1
        while out in self._used:
            k += 1
            out = f"{name}_{k}"
        self._used.add(out)
        return out


class Ctx:
    """What every op needs besides its input: names and the kernel regulariser."""

    def __init__(
        self,
        weight_decay: float = 0.0,
        *,
        bn_momentum: float = BN_MOMENTUM,
        bn_epsilon: float = BN_EPSILON,
        init: str = "slim",
        seed: int | None = None,
    ) -> None:
        self.name = Names()
        # as slim's l2_regularizer: wd * sum(w^2) / 2
        self.reg = keras.regularizers.L2(weight_decay / 2) if weight_decay > 0 else None
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        self.init, self._seed, self._count = init, seed, 0

    def initializer(self):
        """A fresh kernel initialiser ("slim": fan-out variance scaling; "keras": glorot)."""
        self._count += 1
        seed = None if self._seed is None else self._seed * 7919 + self._count
        if self.init == "slim":
            return slim_initializer(seed)
        return keras.initializers.GlorotUniform(seed)

    def relu(self, x, p: str):
        return layers.ReLU(name=self.name(f"{p}/relu"))(x)

    def bn(self, x, p: str):
        return layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=self.name(f"{p}/bn")
        )(x)

    def conv(self, x, filters: int, kernel, p: str, *, strides=1, dilation=1):
        return layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            dilation_rate=dilation,
            padding="same",
            use_bias=False,
            kernel_initializer=self.initializer(),
            kernel_regularizer=self.reg,
            name=self.name(f"{p}/conv"),
        )(x)

    def sepconv(self, x, filters: int, kernel: int, p: str, *, strides=1):
        return layers.SeparableConv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            depthwise_initializer=self.initializer(),
            pointwise_initializer=self.initializer(),
            depthwise_regularizer=self.reg,
            pointwise_regularizer=self.reg,
            name=self.name(f"{p}/sepconv"),
        )(x)

    def relu_conv_bn(self, x, filters: int, p: str, *, strides=1):
        """ReLU -> 1x1 conv -> BN: slim's channel (and stride) adapter."""
        return self.bn(self.conv(self.relu(x, p), filters, 1, p, strides=strides), p)


def channels(x) -> int:
    return int(x.shape[-1])


def spatial(x) -> tuple[int, int]:
    return int(x.shape[1]), int(x.shape[2])


def subsample(ctx: Ctx, x, p: str):
    """Keep every second pixel (rows/cols 0, 2, ...): ceil(H/2) x ceil(W/2), like 'same'."""
    return layers.AveragePooling2D(1, strides=2, padding="same", name=ctx.name(f"{p}/subsample"))(x)


def _sep(kernel: int):
    def op(ctx: Ctx, x, filters: int, stride: int, p: str):
        for k in (1, 2):  # two stacked layers, stride on the first only
            q = f"{p}/sep{k}"
            x = ctx.bn(ctx.sepconv(ctx.relu(x, q), filters, kernel, q, strides=stride), q)
            stride = 1
        return x

    return op


def _identity(ctx: Ctx, x, filters: int, stride: int, p: str):
    if stride > 1 or channels(x) != filters:
        return ctx.relu_conv_bn(x, filters, p, strides=stride)
    return x


def _pool(kind: str):
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D

    def op(ctx: Ctx, x, filters: int, stride: int, p: str):
        x = cls(3, strides=stride, padding="same", name=ctx.name(f"{p}/{kind}pool"))(x)
        if channels(x) != filters:  # slim: 1x1 conv -> BN, no ReLU
            x = ctx.bn(ctx.conv(x, filters, 1, p), p)
        return x

    return op


def _conv1x7_7x1(ctx: Ctx, x, filters: int, stride: int, p: str):
    x = ctx.relu(x, p)
    x = ctx.conv(x, filters, (1, 7), f"{p}/1x7", strides=stride)
    x = ctx.conv(x, filters, (7, 1), f"{p}/7x1")
    return ctx.bn(x, p)


def _dil3x3(ctx: Ctx, x, filters: int, stride: int, p: str):
    # Keras refuses dilation together with a stride: convolve densely, then subsample.
    x = ctx.conv(ctx.relu(x, p), filters, 3, p, dilation=2)
    if stride > 1:
        x = subsample(ctx, x, p)
    return ctx.bn(x, p)


OpFn = Callable[[Ctx, object, int, int, str], object]

OPS: dict[str, OpFn] = {
    "sep3x3": _sep(3),
    "sep5x5": _sep(5),
    "sep7x7": _sep(7),
    "conv1x7_7x1": _conv1x7_7x1,
    "identity": _identity,
    "avg3x3": _pool("avg"),
    "max3x3": _pool("max"),
    "dil3x3": _dil3x3,
}


def factorized_reduction(ctx: Ctx, x, filters: int, p: str):
    """Halve H and W without dropping pixels: two stride-2 1x1 paths, the second shifted by
    one pixel, concatenated, then BN (slim's ``factorized_reduction``). The input is ReLU'd
    by the caller."""
    half = filters // 2
    a = subsample(ctx, x, f"{p}/path1")
    a = ctx.conv(a, half, 1, f"{p}/path1")
    b = layers.ZeroPadding2D(((0, 1), (0, 1)), name=ctx.name(f"{p}/path2/pad"))(x)
    b = layers.Cropping2D(((1, 0), (1, 0)), name=ctx.name(f"{p}/path2/shift"))(b)
    b = subsample(ctx, b, f"{p}/path2")
    b = ctx.conv(b, filters - half, 1, f"{p}/path2")  # odd counts: path 2 takes the extra one
    x = layers.Concatenate(name=ctx.name(f"{p}/concat"))([a, b])
    return ctx.bn(x, p)


class DropPath(layers.Layer):
    """Drops a whole op output per example with probability ``1 - keep`` (training only).

    ``keep_prob`` is already scaled by the cell's depth; with ``total_training_steps`` the
    drop rate also ramps up linearly from 0 over training (slim's 'v3' drop connect).
    """

    def __init__(self, keep_prob: float, total_training_steps: int | None = None, seed=None, **kw):
        super().__init__(**kw)
        self.keep_prob = float(keep_prob)
        self.total_training_steps = total_training_steps
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape) -> None:
        # autocast off: under mixed precision a read would give float16 (steps past 2,048
        # lose counts, and the float16 ratio cannot meet the float32 keep probability)
        self.step = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="float32", name="step", autocast=False
        )

    def call(self, x, training=None):
        if not training or self.keep_prob >= 1.0:
            return x
        keep = ops.convert_to_tensor(self.keep_prob, dtype="float32")
        if self.total_training_steps:
            ratio = ops.minimum(1.0, self.step / float(self.total_training_steps))
            keep = 1.0 - ratio * (1.0 - keep)
            self.step.assign_add(1.0)
        noise = keras.random.uniform(
            (ops.shape(x)[0], 1, 1, 1), seed=self.seed_generator, dtype="float32"
        )
        mask = ops.floor(keep + noise)  # 1 with probability keep
        return x * ops.cast(mask / keep, x.dtype)

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.update(
            keep_prob=self.keep_prob,
            total_training_steps=self.total_training_steps,
            seed=self.seed,
        )
        return cfg
