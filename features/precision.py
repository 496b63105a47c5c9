"""Numeric precision for the forward pass, chosen from the hardware and recorded with the features.

``auto`` picks ``mixed_float16`` on a GPU with fast float16 (compute capability 7.0
or newer), ``mixed_bfloat16`` on a CPU with bf16 instructions (``avx512_bf16`` or
``amx_bf16`` in /proc/cpuinfo; about 1.5x for ResNet50 on Zen 4), ``float32``
otherwise. Features are always written as float32 whatever the compute precision.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

from competition.errors import UserError

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
MIN_FLOAT16_CAPABILITY = (7, 0)


def choose_precision(gpu_capabilities: Sequence[tuple[int, int] | None], cpu_flags: set[str]) -> str:
    """The fastest safe precision for these devices: one compute capability per GPU (None if unknown)
    and the CPU's instruction flags."""
    if gpu_capabilities:
        if all(cap is not None and tuple(cap) >= MIN_FLOAT16_CAPABILITY for cap in gpu_capabilities):
            return "mixed_float16"
        return "float32"
    if CPU_BF16_FLAGS & set(cpu_flags):
        return "mixed_bfloat16"
    return "float32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags of the first CPU (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def gpu_capabilities() -> list[tuple[int, int] | None]:
    """The compute capability of every visible GPU."""
    import tensorflow as tf

    return [
        tf.config.experimental.get_device_details(gpu).get("compute_capability")
        for gpu in tf.config.list_physical_devices("GPU")
    ]


def resolve_precision(requested: str) -> str:
    """``requested`` itself, or for ``auto`` the choice for this machine."""
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision '{requested}': choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    return choose_precision(gpu_capabilities(), cpu_flags())


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[str]:
    """Build models under the Keras dtype policy ``policy``; restore the previous one afterwards."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)
