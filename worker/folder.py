"""``folder:PATH`` datasets: a user's own images, one sub-folder per class, streamed from disk.

    PATH/cat/001.png, PATH/dog/xyz.jpg, ...        training (the validation split comes from here)
    PATH/test/cat/..., PATH/test/dog/...           optional test split, the same class names

(the layout ``keras.utils.image_dataset_from_directory`` reads). Loading lists the files and
reads each one's header (size and colour mode: Pillow opens lazily), so an unreadable file,
mixed sizes without ``image_size``, an empty folder or a single class each fail at once with
one line; pixels are decoded only while training, batch by batch, by tf.data, so a folder
bigger than memory works. The validation split is a seeded permutation of the sorted file
list: the same on every worker that sees the same folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from shared.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")  # what tf.io.decode_image reads
TEST_DIR = "test"  # the optional test split's sub-folder (not a class)
STATS_SAMPLE = 512  # images decoded to estimate the per-channel mean/std for normalisation


@dataclass(frozen=True)
class FolderDataset:
    """A streamed dataset: file paths and labels; images are decoded when iterated."""

    files: dict[str, tuple[str, ...]]  # part (train, val, test) -> paths
    labels: dict[str, np.ndarray]  # part -> int32 class indices
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    classes: tuple[str, ...]
    streamed = True  # never cached whole in memory

    @property
    def n_train(self) -> int:
        return len(self.files["train"])

    @property
    def n_val(self) -> int:
        return len(self.files["val"])

    @property
    def n_test(self) -> int:
        return len(self.files.get("test", ()))

    def source(self, part: str, order=None):
        """A tf.data.Dataset of (image float32 [0, 1] (H, W, C), label), decoded lazily; with
        ``order`` (an int64 tensor of indices), the files in that order (a shuffle by file name)."""
        import tensorflow as tf

        h, w, c = self.input_shape
        files, labels = list(self.files[part]), self.labels[part].astype(np.int32)
        if order is None:
            paths = tf.data.Dataset.from_tensor_slices((files, labels))
        else:
            files_t, labels_t = tf.constant(files), tf.constant(labels)  # names only: small
            paths = tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (tf.gather(files_t, i), tf.gather(labels_t, i)))

        def decode(path, label):
            img = tf.io.decode_image(tf.io.read_file(path), channels=c, expand_animations=False)
            img = tf.image.resize(tf.cast(img, tf.float32) / 255.0, (h, w), antialias=True)
            return tf.ensure_shape(img, (h, w, c)), label

        return paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std per channel from a seeded sample of the training images."""
        from worker.augment import channel_stats

        idx = np.random.default_rng(0).permutation(self.n_train)[:STATS_SAMPLE]
        sample = replace(self, files={"train": tuple(self.files["train"][i] for i in idx)},
                         labels={"train": self.labels["train"][idx]})
        x = np.concatenate([b.numpy() for b, _ in sample.source("train").batch(128)])
        return channel_stats(x)

    def capped(self, n: int) -> "FolderDataset":
        if n >= self.n_train:
            return self
        return replace(self, files={**self.files, "train": self.files["train"][:n]},
                       labels={**self.labels, "train": self.labels["train"][:n]})

    def __repr__(self) -> str:
        return (f"FolderDataset({self.name}: {self.n_train} train, {self.n_val} val, {self.n_test} test, "
                f"{self.input_shape}, {self.num_classes} classes)")


def folder_spec(path: str, *, image_size: int | None = None) -> tuple[tuple[int, int, int], int]:
    """(input shape, number of classes), reading file headers only."""
    root, classes, files, _labels, shape = _scan(path, image_size)
    return shape, len(classes)


def load_folder(path: str, *, validation_size: float | None, seed: int, image_size: int | None) -> FolderDataset:
    """The folder as a streamed dataset with a seeded validation split."""
    from worker.splits import split_indices

    root, classes, files, labels, shape = _scan(path, image_size)
    train_idx, val_idx = split_indices(len(files["all"]), validation_size=validation_size, seed=seed)
    parts = {"train": train_idx, "val": val_idx}
    out_files = {k: tuple(files["all"][i] for i in idx) for k, idx in parts.items()}
    out_labels = {k: labels["all"][idx] for k, idx in parts.items()}
    if "test" in files:
        out_files["test"], out_labels["test"] = tuple(files["test"]), labels["test"]
    return FolderDataset(files=out_files, labels=out_labels, input_shape=shape,
                         num_classes=len(classes), name=f"folder:{path}", classes=tuple(classes))


def _scan(path: str, image_size: int | None):
    where = f"image folder {path}"
    if not path:
        raise UserError("folder dataset needs a path: folder:PATH")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{where} does not exist or is not a folder")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and d.name != TEST_DIR
                     and not d.name.startswith("."))
    if not classes:
        raise UserError(f"{where} has no class sub-folders; put each class's images in PATH/<class>/")
    if len(classes) < 2:
        raise UserError(f"{where} has a single class ({classes[0]}); need at least 2 class sub-folders")
    files, labels = {}, {}
    files["all"], labels["all"] = _list(root, classes, where)
    if not files["all"]:
        raise UserError(f"{where} holds no images ({', '.join(EXTENSIONS)}) in its class sub-folders")
    test_root = root / TEST_DIR
    if test_root.is_dir():
        unknown = sorted(d.name for d in os.scandir(test_root) if d.is_dir() and d.name not in classes)
        if unknown:
            raise UserError(f"{where}: test/ has classes the training folders lack: {', '.join(unknown)}")
        files["test"], labels["test"] = _list(test_root, classes, where)
        if not files["test"]:
            files.pop("test"), labels.pop("test")
    shape = _shape(root, [f for part in files.values() for f in part], image_size, where)
    return root, classes, files, labels, shape


def _list(root: Path, classes: list[str], where: str) -> tuple[list[str], np.ndarray]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            continue
        for f in sorted(os.listdir(d)):
            if f.lower().endswith(EXTENSIONS):
                paths.append(str(d / f))
                labels.append(k)
    return paths, np.asarray(labels, dtype=np.int32)


def _shape(root: Path, paths: list[str], image_size: int | None, where: str) -> tuple[int, int, int]:
    """Check every file's header; (H, W, C) of the images after resizing."""
    from PIL import Image, UnidentifiedImageError

    sizes: dict[tuple[int, int], str] = {}
    colour = False
    for p in paths:
        try:
            with Image.open(p) as im:  # reads the header only; pixels stay on disk
                size, mode = im.size, im.mode
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            rel = os.path.relpath(p, root)
            raise UserError(f"{where}: cannot read image {rel} ({type(exc).__name__}); remove or replace it") from None
        sizes.setdefault(size, p)
        colour = colour or mode not in ("L", "1", "I", "I;16", "F")
    channels = 3 if colour else 1
    if image_size is not None:
        return image_size, image_size, channels
    if len(sizes) > 1:
        (a, pa), (b, pb) = list(sizes.items())[:2]
        raise UserError(
            f"{where}: images have mixed sizes ({a[0]}x{a[1]} in {os.path.relpath(pa, root)}, "
            f"{b[0]}x{b[1]} in {os.path.relpath(pb, root)}); set image_size (--image-size) to resize them"
        )
    (w, h), = sizes
    return h, w, channels
