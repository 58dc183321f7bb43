"""Which accelerator this process sees, and what 'auto' means for mixed precision and XLA."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Switch = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class Device:
    name: str  # 'cpu' or 'GPU:0 (NVIDIA H100 80GB HBM3)'
    gpu: bool
    compute_capability: tuple[int, int] | None

    @property
    def fast_fp16(self) -> bool:
        """Tensor cores (compute capability >= 7.0) make float16 worth it."""
        return self.gpu and (self.compute_capability or (0, 0)) >= (7, 0)


@lru_cache(maxsize=1)
def current_device() -> Device:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return Device("cpu", False, None)
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
    except (ValueError, RuntimeError):
        details = {}
    label = details.get("device_name") or "GPU"
    cc = details.get("compute_capability")
    return Device(f"GPU:0 ({label})", True, tuple(cc) if cc else None)


def use_mixed_precision(setting: Switch, device: Device) -> bool:
    return setting == "on" or (setting == "auto" and device.fast_fp16)


def use_jit_compile(setting: Switch, device: Device) -> bool:
    return setting == "on" or (setting == "auto" and device.gpu)
