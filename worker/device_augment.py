"""Augmentation on the device: the first, seeded operations of the compiled training step.

The host hands each training batch over as it holds it (uint8 pixels for 8-bit datasets,
float32 for others and for decoded image folders) with the batch's stateless key
(`worker.augment.host_batches`); the training step scales it to [0, 1], normalises and
crops, flips and cuts out with that key (`worker.augment.augment_images`, the ops tf.data
runs in `train_pipeline`), all inside the step's tf.function (XLA where it is on). The
draws are those of `train_pipeline`: epoch e's augmentation stays a function of (seed, e)
and the batch index, and a resumed child sees the batches it would have seen.

Evaluation is unchanged: its batches are normalised once on the host and cached.
"""

from __future__ import annotations

import keras

from worker.augment import Augment, augment_images


def to_unit(x):
    """Images as the host holds them -> float32 in [0, 1] (uint8 pixels divided by 255, as
    `worker.datasets` does when it loads them; float images are already in [0, 1])."""
    import tensorflow as tf

    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


def augment_on_device(x, key, aug: Augment):
    """A host batch (B, H, W, C) and its key -> the normalised, augmented float32 batch."""
    return augment_images(to_unit(x), key, aug)


class DeviceAugmented(keras.Model):
    """``net`` trained on ``((images, key), labels)`` batches, augmented in its training step.

    Holds ``net``'s weights and nothing else (the same weights in the same order: checkpoints
    and parameter counts are those of ``net``); inference and evaluation call ``net`` as it is."""

    def __init__(self, net: keras.Model, aug: Augment) -> None:
        super().__init__(name=net.name)
        self.net, self.aug = net, aug
        self.built = net.built  # nothing of its own to build: count_params works before fit

    def call(self, inputs, training=None):
        return self.net(inputs, training=training)

    def train_step(self, data):
        (images, key), labels = data
        return super().train_step((augment_on_device(images, key, self.aug), labels))
