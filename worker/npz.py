"""Reading a user's ``npz:PATH`` dataset: x_train, y_train (and optionally x_test, y_test),
each mistake one `UserError` line saying what is wrong and how to fix it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from shared.errors import UserError


def read_npz(path: str):
    p = Path(path).expanduser()
    where = f"npz file {p}"
    if not path:
        raise UserError("npz dataset needs a path: npz:PATH")
    if not p.is_file():
        raise UserError(f"{where} does not exist")
    with open(p, "rb") as head:
        magic = head.read(4)
    if magic[:2] != b"PK":  # an .npz is a zip archive; numpy would call anything else pickled data
        raise UserError(f"{where} is not an npz file (numpy.savez writes a zip archive; this one starts with {magic!r})")
    try:
        with np.load(p, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{where} cannot be read as .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("x_train", "y_train") if k not in data]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)} (it has: {', '.join(data) or 'nothing'})")
    if ("x_test" in data) != ("y_test" in data):
        raise UserError(f"{where} must have both x_test and y_test, or neither")
    x, y = data["x_train"], data["y_train"]
    xt, yt = data.get("x_test"), data.get("y_test")
    _check_pair(where, "train", x, y)
    if xt is not None and yt is not None:  # both or neither, checked above
        _check_pair(where, "test", xt, yt)
        if xt.shape[1:] != x.shape[1:]:
            raise UserError(f"{where}: x_test images are {xt.shape[1:]}, x_train images {x.shape[1:]}")
    _check_labels(where, y.reshape(-1), None if yt is None else yt.reshape(-1))
    return x, y.reshape(-1), xt, None if yt is None else yt.reshape(-1)


def _check_pair(where: str, part: str, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) == 0:
        raise UserError(f"{where}: x_{part} is empty")
    if x.ndim not in (3, 4):
        raise UserError(f"{where}: x_{part} must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise UserError(f"{where}: x_{part} must hold numbers, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise UserError(f"{where}: x_{part} holds NaN or infinite values")
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise UserError(f"{where}: y_{part} must be class indices of shape (N,), got {y.shape}")
    y = y.reshape(-1)
    if len(y) != len(x):
        raise UserError(f"{where}: x_{part} has {len(x)} images but y_{part} has {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise UserError(f"{where}: y_{part} must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0:
        raise UserError(f"{where}: y_{part} has label {int(y.min())}; labels must be 0..K-1")
    if part == "train" and int(y.max()) < 1:
        raise UserError(f"{where}: y_train holds a single class; need at least 2")


def _check_labels(where: str, y: np.ndarray, yt: np.ndarray | None) -> None:
    """y_train must number its K classes 0..K-1 (the head has one output per class); y_test
    may use only those."""
    classes = np.unique(y)
    k = len(classes)
    if int(classes[-1]) != k - 1:
        odd = [int(c) for c in classes if not 0 <= c < k][:3]
        raise UserError(
            f"{where}: y_train has {k} classes but labels {odd} outside 0..{k - 1}; number the classes "
            "0..K-1 (np.unique(y_train, return_inverse=True) does)"
        )
    if yt is not None and len(yt) and (yt.min() < 0 or yt.max() > k - 1):
        odd = [int(c) for c in np.unique(yt) if not 0 <= c < k][:3]
        raise UserError(f"{where}: y_test has labels {odd} that are not among y_train's classes 0..{k - 1}")
