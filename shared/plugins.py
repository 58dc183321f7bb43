"""Load a function named as ``"module:function"`` (trainers, hooks) with one clear error."""

from __future__ import annotations

import importlib
from typing import Callable

from shared.errors import UserError


def load_callable(path: str, *, what: str) -> Callable:
    module, _, name = path.partition(":")
    if not module or not name:
        raise UserError(f"{what} must look like 'package.module:function', got {path!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{what} {path!r} cannot be imported: {exc}") from None
