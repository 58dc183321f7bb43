"""Datasets for child training: loading, caching and the seeded validation split.

Names: ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` (downloaded once into the
shared cache directory, then read from there by every worker), ``digits`` (scikit-learn's
8x8 digits, embedded: works offline; a fixed seeded fifth is its test split), ``npz:PATH``
(arrays ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``) and ``folder:PATH``
(one sub-folder per class, optional ``test/``; streamed from disk, see `worker.folder`).

Images come out as float32 in [0, 1], shape (N, H, W, C) (8-bit training images also as
their uint8 pixels, for the device-side augmentation); labels as int32 class indices.
The validation split depends only on the data and the seed, so every worker that loads the
same dataset with the same seed holds out exactly the same images.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import DatasetError, UserError
from worker.npz import read_npz
from worker.splits import split_indices

OFFLINE_ENV = "PNAS_OFFLINE"  # set to 1: never download, use the cache or fail clearly
_KERAS_DATA = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


# The CIFAR family is augmented by default (the paper's training); others on request.
AUGMENTED_BY_DEFAULT = frozenset({"cifar10", "cifar100"})
# A mirrored digit or letter is another symbol; npz content is unknown: no flip by default.
_NO_FLIP = frozenset({"digits", "mnist", "fashion_mnist"})
DIGITS_TEST_SIZE = 360  # about a fifth of the 1,797 digits, the same images on every machine
DIGITS_TEST_SEED = 2018  # fixed, never the run's data seed: the test split never moves


def flips_by_default(name: str) -> bool:
    """May a random horizontal flip be used on this dataset unless told otherwise?"""
    return name not in _NO_FLIP and not name.startswith("npz:")


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int32
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    # x_train as the 8-bit pixels it was decoded from (x_train == train_pixels / 255), which
    # the host slices for the device-side augmentation (a quarter of the bytes); None when
    # the source was not 8-bit (digits, float npz files)
    train_pixels: np.ndarray | None = None

    streamed = False  # held in memory: pipelines may cache it

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_val(self) -> int:
        return len(self.x_val)

    @property
    def n_test(self) -> int:
        return 0 if self.x_test is None else len(self.x_test)

    def source(self, part: str, *, pixels: bool = False):
        """A tf.data.Dataset of single (image, label) pairs of ``part`` (train, val or test);
        with ``pixels``, the training images as uint8 `train_pixels` where the dataset has them."""
        import tensorflow as tf

        x, y = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[part]
        if pixels and part == "train" and self.train_pixels is not None:
            x = self.train_pixels
        return tf.data.Dataset.from_tensor_slices((x, y))

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training part (for normalisation)."""
        from worker.augment import channel_stats

        return channel_stats(self.x_train)

    def capped(self, n: int) -> "Dataset":
        """The same dataset with at most ``n`` training images (the first ``n``)."""
        if n >= self.n_train:
            return self
        pixels = None if self.train_pixels is None else self.train_pixels[:n]
        return replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n], train_pixels=pixels)

    def __repr__(self) -> str:
        test = self.n_test
        return (
            f"Dataset({self.name}: {len(self.x_train)} train, {len(self.x_val)} val, {test} test, "
            f"{self.input_shape}, {self.num_classes} classes)"
        )


# name -> (input shape, classes, the files it needs: (url, cache file name, sha256 or None))
_REMOTE: dict[str, tuple[tuple[int, int, int], int, list[tuple[str, str, str | None]]]] = {
    "cifar10": ((32, 32, 3), 10, [(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")]),
    "cifar100": ((32, 32, 3), 100, [(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
        "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7")]),
    "mnist": ((28, 28, 1), 10, [(
        _KERAS_DATA + "mnist.npz", "mnist.npz",
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")]),
    "fashion_mnist": ((28, 28, 1), 10, [
        (_KERAS_DATA + f, f"fashion-mnist-{f}", None)
        for f in ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                  "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")]),
}
NAMES = ("cifar10", "cifar100", "mnist", "fashion_mnist", "digits", "npz:PATH", "folder:PATH")


def dataset_spec(name: str, *, image_size: int | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, number of classes) without downloading anything (npz files are read)."""
    if name == "digits":
        return (8, 8, 1), 10
    if name in _REMOTE:
        shape, classes, _ = _REMOTE[name]
        return shape, classes
    if name.startswith("npz:"):
        x, y, _, yt = read_npz(name[4:])
        shape = x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)
        return tuple(int(d) for d in shape), _num_classes(y if yt is None else np.concatenate([y, yt]))
    if name.startswith("folder:"):
        from worker.folder import folder_spec

        return folder_spec(name[7:], image_size=image_size)
    raise _unknown(name)


def on_this_machine(name: str, cache_dir: str | Path) -> bool:
    """Whether loading ``name`` here needs no download and no path this machine lacks
    (embedded, a ``kind:PATH`` that exists, or in the cache). Unknown names: True (loading
    them says what is wrong)."""
    if name in _REMOTE:
        cache = Path(cache_dir)
        files = _REMOTE[name][2]
        return (cache / f"{name}.npz").is_file() or all((cache / f).is_file() for _, f, _ in files)
    if ":" in name:
        return Path(name.split(":", 1)[1]).expanduser().exists()
    return True


def load_dataset(
    name: str,
    *,
    validation_size: float | None,
    seed: int,
    cache_dir: str | Path,
    max_train_samples: int | None = None,
    allow_download: bool | None = None,
    image_size: int | None = None,
) -> Dataset:
    """Load ``name`` and hold out a seeded validation split from its training data.

    ``validation_size`` >= 1 is a count, < 1 a fraction of the training data, None the
    default of `split_indices`.
    ``max_train_samples`` caps the training part after the split (the split never changes).
    ``allow_download`` None = unless the settings say offline (PNAS_OFFLINE=1).
    ``image_size`` resizes ``folder:`` images (square); the other datasets keep their size.
    Raises `UserError` for an unknown name, a bad npz file or a missing offline cache.
    """
    if allow_download is None:
        from shared.settings import Settings

        # read now, not the cached settings: PNAS_OFFLINE may be set after start-up
        allow_download = not Settings().offline
    if name == "digits":
        x, y, xt, yt = _digits()
    elif name in _REMOTE:
        x, y, xt, yt = _remote(name, Path(cache_dir), allow_download)
    elif name.startswith("npz:"):
        x, y, xt, yt = read_npz(name[4:])
    elif name.startswith("folder:"):
        from worker.folder import load_folder

        d = load_folder(name[7:], validation_size=validation_size, seed=seed, image_size=image_size)
        return d if max_train_samples is None else d.capped(max_train_samples)
    else:
        raise _unknown(name)
    num_classes = _num_classes(y if yt is None else np.concatenate([y, yt]))
    scale = _scale(x)  # one scale for both parts: test pixels mean what train pixels mean
    pixels = (x if x.ndim == 4 else x[..., None]) if x.dtype == np.uint8 and scale == 255.0 else None
    x, xt = _images(x, scale), None if xt is None else _images(xt, scale)
    y, yt = y.astype(np.int32), None if yt is None else yt.astype(np.int32)

    train_idx, val_idx = split_indices(len(x), validation_size=validation_size, seed=seed)
    if max_train_samples is not None:
        train_idx = train_idx[:max_train_samples]
    return Dataset(
        x_train=x[train_idx], y_train=y[train_idx], x_val=x[val_idx], y_val=y[val_idx],
        x_test=xt, y_test=yt, input_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=num_classes, name=name, train_pixels=None if pixels is None else pixels[train_idx],
    )


def load_for_child(train: Any, cache_dir: Path) -> Dataset:
    """A child's dataset (``train`` is its TrainConfig), as a worker loads it: a dataset this
    worker cannot load is a `DatasetError` whose message starts with "dataset", so that the
    first failed child says plainly what is wrong, and the controller stops the run soon."""
    try:
        return load_dataset(
            train.dataset,
            validation_size=train.validation_size,
            seed=train.data_seed,
            cache_dir=cache_dir,
            max_train_samples=train.max_train_samples,
            image_size=train.image_size,
        )
    except (UserError, OSError) as exc:
        raise DatasetError(f"dataset {train.dataset!r} cannot be loaded on this worker: {exc}") from None


def _unknown(name: str) -> UserError:
    return UserError(f"unknown dataset {name!r}; choose one of: {', '.join(NAMES)}")


def _scale(x: np.ndarray) -> float:
    """What to divide pixels by: 255 for 8-bit images, 1 for [0, 1] floats, else the max."""
    if x.dtype == np.uint8:
        return 255.0
    hi = float(np.max(x)) if x.size else 1.0
    return 1.0 if hi <= 1.0 else 255.0 if hi <= 255.0 else hi


def _images(x: np.ndarray, scale: float) -> np.ndarray:
    """Images -> float32 (N, H, W, C), divided by ``scale`` (so in [0, 1] for train)."""
    if x.ndim == 3:
        x = x[..., None]  # grayscale: add the channel axis
    x = x.astype(np.float32)
    if scale != 1.0:
        x /= np.float32(scale)
    return x


def _num_classes(y: np.ndarray) -> int:
    return int(y.max()) + 1


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)  # pixel values 0..16
    rest, test = split_indices(len(x), validation_size=DIGITS_TEST_SIZE, seed=DIGITS_TEST_SEED)
    return x[rest], d.target[rest], x[test], d.target[test]


# --- downloads ----------------------------------------------------------------------------
def _remote(name: str, cache_dir: Path, allow_download: bool):
    _, _, files = _REMOTE[name]
    cached = cache_dir / f"{name}.npz"  # decoded once, then loaded fast by every worker
    if cached.is_file():
        try:
            with np.load(cached) as f:
                return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # a broken cache file: decode again
    paths = [_fetch(url, cache_dir / fname, sha, name, allow_download) for url, fname, sha in files]
    x, y, xt, yt = _DECODERS[name](paths)
    _atomic_savez(cached, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return x, y, xt, yt


def _fetch(url: str, dest: Path, sha256: str | None, name: str, allow_download: bool) -> Path:
    """The cached file, downloading it first if needed (atomic: workers may race here)."""
    if dest.is_file():
        return dest
    offline = (
        f"dataset {name!r} is not in the cache {dest.parent} and "
        "{why}; copy it there, or use an offline dataset: digits or npz:PATH"
    )
    if not allow_download:
        raise UserError(offline.format(why=f"downloads are off ({OFFLINE_ENV}=1)"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            h = hashlib.sha256()
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
        if sha256 and h.hexdigest() != sha256:
            raise UserError(f"download of {url} is corrupt (sha256 mismatch); try again")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise UserError(offline.format(why=f"downloading {url} failed ({exc})")) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _atomic_savez(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _cifar(paths, *, train: list[str], test: str, label_key: bytes):
    def read(tar: tarfile.TarFile, member: str):
        f = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/" + member)))
        d = pickle.load(f, encoding="bytes")
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d[label_key], dtype=np.uint8)

    with tarfile.open(paths[0], "r:gz") as tar:
        parts = [read(tar, m) for m in train]
        xt, yt = read(tar, test)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), xt, yt


def _mnist(paths):
    with np.load(paths[0]) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _fashion(paths):
    def read(p, offset):
        with gzip.open(p, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    y, x = read(paths[0], 8), read(paths[1], 16).reshape(-1, 28, 28)
    yt, xt = read(paths[2], 8), read(paths[3], 16).reshape(-1, 28, 28)
    return x, y, xt, yt


_DECODERS = {
    "cifar10": lambda p: _cifar(p, train=[f"data_batch_{i}" for i in range(1, 6)],
                                test="test_batch", label_key=b"labels"),
    "cifar100": lambda p: _cifar(p, train=["train"], test="test", label_key=b"fine_labels"),
    "mnist": _mnist,
    "fashion_mnist": _fashion,
}
