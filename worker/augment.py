"""The input pipelines of child training: shuffling, normalisation and augmentation in tf.data.

The standard CIFAR pipeline (as the NASNet/PNASNet CIFAR trainings used it): per-channel
mean/std normalisation with the training split's statistics, then a 4-pixel zero pad and a
random crop back to the original size, then a random horizontal flip (off for digits and
MNIST-like sets, where a mirrored 2 is no 2), and optionally cutout. Padding after
normalisation makes the padded pixels the mean colour, as the reference code did.

Augmentation works on whole batches with vectorised ops (one gather per axis, no per-image
Python). Two ways to run it, with the same draws: `train_pipeline` runs it in tf.data on the
host CPU (overlapped with training by prefetch); `host_batches` leaves it to the training
step on the device (`worker.device_augment`), so the host only slices cached uint8 batches
and prefetches them — what child training uses (issue 26: the host must keep up with GPUs).

Determinism: epoch e's batch order is a stateless permutation keyed by (seed, e) and its
augmentation from stateless draws keyed by (seed, e, batch): the same seed gives the same
epochs on every machine, and a child resumed at epoch e sees the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD = 4  # pixels of zero padding before the random crop: the CIFAR standard


@dataclass(frozen=True)
class Augment:
    """What the training pipeline does to each batch (resolved from `TrainConfig`)."""

    mean: tuple[float, ...] | None = None  # per channel; None = no normalisation
    std: tuple[float, ...] | None = None
    crop: bool = False  # 4-px zero pad + random crop
    flip: bool = False  # random horizontal flip
    cutout: int = 0  # side of the square zeroed at a random place; 0 = off

    @property
    def active(self) -> bool:
        """Does it change the training images at all (normalise, crop, flip or cutout)?"""
        return self.mean is not None or self.crop or self.flip or bool(self.cutout)

    @property
    def name(self) -> str:
        return "standard" if self.crop else "none"


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images (N, H, W, C), in float64 for accuracy."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    std = flat.std(axis=0)
    return tuple(float(v) for v in flat.mean(axis=0)), tuple(float(max(v, 1e-6)) for v in std)


def train_pipeline(source, n: int, batch_size: int, seed: int, aug: Augment, *, cache: bool = True,
                   epochs: int = 1, first_epoch: int = 0):
    """Batches of (image, label) for epochs ``first_epoch`` .. ``first_epoch + epochs - 1``
    (0-based) back to back, every image exactly once per epoch (a last partial batch per epoch,
    no batch across two epochs).

    ``source``: with ``cache`` (data held in memory), a tf.data.Dataset of single
    (image float32 [0, 1], label) pairs; without (streamed from disk), a function that takes
    an order (an int64 tensor, a permutation of ``range(n)``) and returns those pairs in that
    order, so that a streamed epoch is shuffled by file, not through a buffer of decoded images.

    Epoch e's order and augmentation are a function of (``seed``, e) only, drawn with
    stateless ops (the order by `stateless_shuffle`, not by a seeded ``shuffle``: its seed
    cannot be a tensor once a global seed of 0 is set): a pipeline started at ``first_epoch``
    (a resumed child) gives exactly the batches an uninterrupted one gives from that epoch on.
    Train with ``steps_per_epoch = ceil(n / batch_size)``."""
    import tensorflow as tf

    return _batches(source, n, batch_size, seed, cache=cache, epochs=epochs, first_epoch=first_epoch,
                    finish=(lambda batch, key: _augment_batch(batch, key, aug)) if aug.active else None,
                    parallel=tf.data.AUTOTUNE)


def host_batches(source, n: int, batch_size: int, seed: int, *, cache: bool = True, epochs: int = 1,
                 first_epoch: int = 0):
    """The batches of `train_pipeline`, in its order, not augmented: ``((images, key), label)``,
    the images as ``source`` holds them (uint8 pixels where the dataset keeps them) and ``key``
    the stateless seed (int64 [2]) `train_pipeline` augments that batch with. The training step
    augments on the device with it (`worker.device_augment`): the same crops, flips and holes
    as `train_pipeline` gives, while the host only slices and prefetches."""
    return _batches(source, n, batch_size, seed, cache=cache, epochs=epochs, first_epoch=first_epoch,
                    finish=lambda batch, key: ((batch[0], key), batch[1]), parallel=None)


def _batches(source, n: int, batch_size: int, seed: int, *, cache: bool, epochs: int, first_epoch: int,
             finish, parallel):
    """Epochs of batches in their stateless order; ``finish(batch, key)`` (None: nothing) maps
    each batch with its augmentation key (a function of seed, epoch and batch index)."""
    import tensorflow as tf

    base = tf.constant(seed, tf.int64)
    whole = source.batch(max(n, 1)).cache() if cache else None  # one element: every image, decoded once
    steps = -(-n // batch_size)
    map_kw = {"num_parallel_calls": parallel, "deterministic": True} if parallel else {}

    def epoch(e):
        key = tf.stack([base, e])
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
        aug_key = tf.random.experimental.stateless_fold_in(key, 0)
        if whole is not None:

            def one(x, y, i):  # batch i: a slice of the order, one gather per array (no per-image element)
                idx = order[i * batch_size : (i + 1) * batch_size]
                batch = tf.gather(x, idx), tf.gather(y, idx)
                return batch if finish is None else finish(batch, tf.random.experimental.stateless_fold_in(aug_key, i))

            return whole.flat_map(lambda x, y: tf.data.Dataset.range(steps).map(lambda i: one(x, y, i), **map_kw))
        ds = source(order).batch(batch_size)
        if finish is not None:
            ds = tf.data.Dataset.zip(ds, tf.data.Dataset.range(tf.int64.max)).map(
                lambda batch, i: finish(batch, tf.random.experimental.stateless_fold_in(aug_key, i)), **map_kw)
        return ds

    return tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(source, batch_size: int, aug: Augment, *, cache: bool = True):
    """Batches for evaluation: normalised as training is, never augmented."""
    import tensorflow as tf

    ds = source.batch(batch_size)
    if aug.mean is not None:
        ds = ds.map(lambda x, y: (_normalise(x, aug), y), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    return ds.prefetch(tf.data.AUTOTUNE)


def _normalise(x, aug: Augment):
    import tensorflow as tf

    if aug.mean is None:
        return x
    return (x - tf.constant(aug.mean, tf.float32)) / tf.constant(aug.std, tf.float32)


def _augment_batch(batch, key, aug: Augment):
    x, y = batch
    return augment_images(x, key, aug), y


def augment_images(x, key, aug: Augment):
    """One batch of images (B, H, W, C) float32 in [0, 1]: normalise, pad + crop, flip,
    cutout; ``key`` (a stateless seed pair) seeds the draws. Plain TensorFlow ops, so the
    same function runs in tf.data on the host and inside the compiled training step."""
    import tensorflow as tf

    x = _normalise(x, aug)
    b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]

    def draw(k: int, shape, maxval):
        # Philox named: what "auto" picks on a CPU or GPU kernel, while XLA's "auto" is ThreeFry,
        # so a compiled step draws what tf.data draws on the host
        seed = tf.random.experimental.stateless_fold_in(key, k, alg="philox")
        return tf.random.stateless_uniform(shape, seed=seed, minval=0, maxval=maxval, dtype=tf.int32, alg="philox")

    if aug.crop:
        padded = tf.pad(x, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]])  # zeros = the mean colour
        oy, ox = draw(1, [b], 2 * PAD + 1), draw(2, [b], 2 * PAD + 1)
        rows = oy[:, None] + tf.range(h)[None, :]  # (B, H)
        cols = ox[:, None] + tf.range(w)[None, :]  # (B, W)
        x = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2 PAD, C)
        x = tf.gather(x, cols, axis=2, batch_dims=1)  # (B, H, W, C)
    if aug.flip:
        mirror = draw(3, [b], 2) > 0
        x = tf.where(mirror[:, None, None, None], tf.reverse(x, axis=[2]), x)
    if aug.cutout:
        cy, cx = draw(4, [b], h), draw(5, [b], w)  # the centre may lie anywhere (DeVries 2017)
        half = aug.cutout // 2
        r, c = tf.range(h)[None, :], tf.range(w)[None, :]
        in_r = (r >= cy[:, None] - half) & (r < cy[:, None] - half + aug.cutout)  # (B, H)
        in_c = (c >= cx[:, None] - half) & (c < cx[:, None] - half + aug.cutout)  # (B, W)
        hole = in_r[:, :, None] & in_c[:, None, :]  # (B, H, W)
        x = tf.where(hole[..., None], tf.zeros_like(x), x)
    return x
