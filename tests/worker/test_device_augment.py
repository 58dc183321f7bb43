"""Augmentation in the training step: the host's batches, the device's draws, the same training."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from worker.augment import Augment, host_batches, train_pipeline
from worker.datasets import load_dataset
from worker.device_augment import DeviceAugmented, augment_on_device

RECIPE = Augment(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), crop=True, flip=True, cutout=4)


def pixels(n: int = 70, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n, dtype=np.int32)


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(255)  # what worker.datasets makes of 8-bit images


def source(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y))


@pytest.mark.parametrize("jit", [False, True])
def test_the_device_draws_the_crops_flips_and_holes_the_host_pipeline_draws(jit):
    x, y = pixels()
    cpu = [(a.numpy(), b.numpy()) for a, b in train_pipeline(source(as_float(x), y), len(x), 16, 7, RECIPE, epochs=2)]
    step = tf.function(lambda images, key: augment_on_device(images, key, RECIPE), jit_compile=jit)
    host = list(host_batches(source(x, y), len(x), 16, 7, epochs=2))
    assert len(host) == len(cpu) == 2 * 5
    for ((images, key), labels), (want, want_labels) in zip(host, cpu):
        assert images.dtype == tf.uint8 and key.shape == (2,)  # the host only slices pixels
        np.testing.assert_array_equal(labels.numpy(), want_labels)
        np.testing.assert_array_equal(images.numpy(), x[labels.numpy()])  # not augmented on the host
        got = step(images, key).numpy()
        # the same pixels in the same places (a pixel moved or mirrored differs by >= 1/255/std);
        # the scaling and normalisation may be fused differently in the step: last-bit rounding
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_resumed_host_pipeline_gives_the_keys_and_batches_of_an_uninterrupted_one():
    x, y = pixels(40)
    full = list(host_batches(source(x, y), len(x), 16, 3, epochs=4))
    resumed = list(host_batches(source(x, y), len(x), 16, 3, epochs=2, first_epoch=2))
    assert len(resumed) == len(full[6:]) == 6
    for ((xa, ka), ya), ((xb, kb), yb) in zip(full[6:], resumed):
        for a, b in ((xa, xb), (ka, kb), (ya, yb)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(full[0][0][1].numpy(), full[3][0][1].numpy())  # a new key every batch


def test_a_network_trained_with_device_augmentation_ends_as_one_fed_by_the_host_pipeline():
    """The training step augments and then trains exactly as fit does on host-augmented batches."""
    x, y = pixels(48, size=8)
    y = y % 3

    def net() -> keras.Model:
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
        return m

    def fit(model, ds) -> list[np.ndarray]:
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
        model.fit(ds, epochs=2, steps_per_epoch=3, verbose=0, shuffle=False)
        return model.get_weights()

    on_host = fit(net(), train_pipeline(source(as_float(x), y), len(x), 16, 5, RECIPE, epochs=2))
    on_device_model = DeviceAugmented(net(), RECIPE)
    assert on_device_model.count_params() == 8 * 8 * 3 * 3 + 3  # the network's weights, nothing more
    on_device = fit(on_device_model, host_batches(source(x, y), len(x), 16, 5, epochs=2))
    untrained = net().get_weights()
    assert not np.allclose(on_device[0], untrained[0])  # it trained
    for a, b in zip(on_host, on_device):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_8_bit_datasets_keep_their_pixels_for_the_host_to_slice(tmp_path):
    x, y = pixels(50, size=6)
    np.savez(tmp_path / "u8.npz", x_train=x, y_train=y % 2)
    np.savez(tmp_path / "f.npz", x_train=as_float(x), y_train=y % 2)
    d = load_dataset(f"npz:{tmp_path / 'u8.npz'}", validation_size=10, seed=0, cache_dir=tmp_path)
    assert d.train_pixels is not None and d.train_pixels.dtype == np.uint8
    np.testing.assert_array_equal(as_float(d.train_pixels), d.x_train)  # the same images, same order
    capped = d.capped(7)
    assert capped.train_pixels is not None and len(capped.train_pixels) == 7
    (first, _), = capped.source("train", pixels=True).batch(7)
    np.testing.assert_array_equal(first.numpy(), d.train_pixels[:7])
    floats = load_dataset(f"npz:{tmp_path / 'f.npz'}", validation_size=10, seed=0, cache_dir=tmp_path)
    assert floats.train_pixels is None
    (images, _), = floats.source("train", pixels=True).batch(100)
    assert images.dtype == tf.float32  # float sources: the host slices their float images


def test_a_child_with_augmentation_augments_on_the_device_and_one_without_trains_as_before(tmp_path):
    from shared.config import TrainConfig
    from shared.space import Cell
    from worker.training import train_child

    x, y = pixels(96, size=8)
    np.savez(tmp_path / "u8.npz", x_train=x, y_train=y % 3)
    data = load_dataset(f"npz:{tmp_path / 'u8.npz'}", validation_size=32, seed=0, cache_dir=tmp_path)
    cell = Cell.from_json([[-2, "max3x3", -1, "identity"]])
    kw = {"dataset": "npz:x", "epochs": 1, "filters": 4, "cells_per_stage": 1, "batch_size": 16, "jit_compile": "off"}
    augmented = train_child(cell, TrainConfig(**kw, augment="standard", cutout=2), dataset=data, seed=0)
    plain = train_child(cell, TrainConfig(**kw, augment="none"), dataset=data, seed=0)
    assert augmented.extra["augment_on"] == "device" and plain.extra["augment_on"] is None
    assert augmented.params == plain.params and len(augmented.history) == 1
    assert all(np.isfinite(m.loss) for m in augmented.history)
