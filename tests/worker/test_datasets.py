"""Datasets: the seeded split, npz files, offline behaviour, and one clear error per mistake."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest

import worker.datasets as datasets
from shared.errors import UserError
from worker.datasets import dataset_spec, load_dataset, split_indices


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test here may reach the internet: every download attempt fails like a dead link."""
    def refuse(*_a, **_k):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", refuse)


def digits(tmp_path, **kw):
    return load_dataset("digits", validation_size=kw.pop("validation_size", 0.2),
                        seed=kw.pop("seed", 0), cache_dir=tmp_path, **kw)


def test_digits_are_float_images_in_unit_range_with_a_channel_axis(tmp_path):
    d = digits(tmp_path)
    assert d.input_shape == (8, 8, 1) and d.num_classes == 10
    assert d.x_train.dtype == np.float32 and d.x_train.shape[1:] == (8, 8, 1)
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    assert d.y_train.dtype == np.int32
    assert len(d.x_test) == 360 and len(d.x_val) == round(0.2 * 1437)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797


def test_validation_split_is_the_same_for_the_same_seed_and_disjoint_from_train(tmp_path):
    a, b = digits(tmp_path, seed=3), digits(tmp_path, seed=3)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, digits(tmp_path, seed=4).x_val)

    train, val = split_indices(1797, validation_size=300, seed=3)
    assert len(val) == 300 and not set(train) & set(val)
    assert sorted(set(train) | set(val)) == list(range(1797))
    # digits has duplicate-free rows often enough to check the images themselves too
    rows = {r.tobytes() for r in a.x_train}
    assert sum(r.tobytes() in rows for r in a.x_val) < 0.05 * len(a.x_val)


def test_count_vs_fraction_and_the_train_cap(tmp_path):
    d = digits(tmp_path, validation_size=100, max_train_samples=50)
    assert len(d.x_val) == 100 and len(d.x_train) == 50
    np.testing.assert_array_equal(d.x_val, digits(tmp_path, validation_size=100).x_val)


@pytest.mark.parametrize("size", [0, 1797, 5000, 0.9999999])
def test_a_validation_size_that_leaves_nothing_is_a_user_error(tmp_path, size):
    with pytest.raises(UserError, match="validation size"):
        digits(tmp_path, validation_size=size)


def test_npz_with_test_split_and_grayscale_uint8(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "ok.npz"
    np.savez(p, x_train=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8), y_train=np.arange(40) % 3,
             x_test=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8), y_test=np.arange(10) % 3)
    d = load_dataset(f"npz:{p}", validation_size=10, seed=0, cache_dir=tmp_path)
    assert d.input_shape == (6, 6, 1) and d.num_classes == 3
    assert len(d.x_train) == 30 and d.x_test.shape == (10, 6, 6, 1)
    assert d.x_train.max() <= 1.0 and d.x_test.dtype == np.float32
    assert dataset_spec(f"npz:{p}") == ((6, 6, 1), 3)


X = np.zeros((8, 4, 4, 3), np.float32)
Y = np.arange(8) % 2


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x_train": X}, "lacks y_train"),
        ({"x_train": X, "y_train": Y[:5]}, "8 images but y_train has 5 labels"),
        ({"x_train": X, "y_train": Y - 1}, "label -1"),
        ({"x_train": X, "y_train": Y + 0.5}, "integer class indices"),
        ({"x_train": X[:0], "y_train": Y[:0]}, "x_train is empty"),
        ({"x_train": X.reshape(8, 48), "y_train": Y}, r"must be \(N, H, W\)"),
        ({"x_train": X, "y_train": Y * 0}, "single class"),
        ({"x_train": X, "y_train": Y, "x_test": X}, "both x_test and y_test"),
        ({"x_train": X, "y_train": Y, "x_test": X[:, :2], "y_test": Y}, "x_test images are"),
        ({"x_train": X * np.nan, "y_train": Y}, "NaN"),
        ({"x_train": X, "y_train": np.where(Y == 1, 1_000_000, Y)}, r"2 classes but labels \[1000000\] outside 0\.\.1; number"),
        ({"x_train": X, "y_train": Y * 2}, r"labels \[2\] outside 0\.\.1"),  # a class missing in between
        ({"x_train": X, "y_train": Y, "x_test": X, "y_test": Y + 1}, r"y_test has labels \[2\] that are not among y_train's classes 0\.\.1"),
    ],
)
def test_each_bad_npz_gives_its_user_error(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(UserError, match=message):
        load_dataset(f"npz:{p}", validation_size=2, seed=0, cache_dir=tmp_path)


def test_unreadable_or_missing_npz(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK but not a zip file at all")
    with pytest.raises(UserError, match="cannot be read as .npz"):
        load_dataset(f"npz:{junk}", validation_size=2, seed=0, cache_dir=tmp_path)
    text = tmp_path / "text.npz"
    text.write_text("x_train,y_train\n1,2\n")  # numpy calls this "pickled (object) data"
    with pytest.raises(UserError, match=r"text.npz is not an npz file \(numpy.savez writes a zip archive") as err:
        load_dataset(f"npz:{text}", validation_size=2, seed=0, cache_dir=tmp_path)
    assert "pickle" not in str(err.value)
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}", validation_size=2, seed=0, cache_dir=tmp_path)


def test_unknown_dataset(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'imagenet'.*digits, npz:PATH"):
        load_dataset("imagenet", validation_size=2, seed=0, cache_dir=tmp_path)
    with pytest.raises(UserError, match="unknown dataset"):
        dataset_spec("imagenet")


def test_offline_with_an_empty_cache_names_the_cache_and_the_offline_choices(tmp_path, monkeypatch):
    cache = tmp_path / "empty-cache"
    with pytest.raises(UserError) as err:  # downloads allowed, but the network is down
        load_dataset("cifar10", validation_size=5000, seed=0, cache_dir=cache)
    msg = str(err.value)
    assert str(cache) in msg and "digits" in msg and "npz:PATH" in msg and "\n" not in msg
    monkeypatch.setenv("PNAS_OFFLINE", "1")
    with pytest.raises(UserError, match="downloads are off"):
        load_dataset("mnist", validation_size=5000, seed=0, cache_dir=cache)


def test_a_cached_dataset_loads_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("PNAS_OFFLINE", "1")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cifar10.npz",
             x_train=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), y_test=np.arange(5))
    d = load_dataset("cifar10", validation_size=10, seed=0, cache_dir=tmp_path)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (20, 10, 5)
    assert d.input_shape == (32, 32, 3) and d.num_classes == 10


def test_spec_needs_no_download(tmp_path):
    assert dataset_spec("cifar10") == ((32, 32, 3), 10)
    assert dataset_spec("cifar100") == ((32, 32, 3), 100)
    assert dataset_spec("mnist") == dataset_spec("fashion_mnist") == ((28, 28, 1), 10)
    assert dataset_spec("digits") == ((8, 8, 1), 10)
