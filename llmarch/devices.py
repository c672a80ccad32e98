"""Devices: where the weights go (``--device-map``), and CUDA clocks and peaks.

``--device-map auto`` lets accelerate place the layers over every visible GPU
and then the CPU (``--max-memory`` caps each), for a model larger than one
device. The weights per device are read back from the loaded tensors.

On CUDA, kernels run asynchronously: a clock reading means nothing until the
device has finished, so every reading of a run is taken after
``torch.cuda.synchronize()`` on every device the model uses. The caching
allocator's peak is reset before the request and read, and reset again, when
the first new token arrives (prefill peak), then read at the end (decode
peak); with the model on several GPUs the peaks are summed over them.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from llmarch.errors import ConfigError

DEVICE_MAPS = ("none", "auto")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def check_device_map(device_map: str) -> None:
    if device_map not in DEVICE_MAPS:
        raise ConfigError(
            f"--device-map must be one of {', '.join(DEVICE_MAPS)}, not '{device_map}'"
        )


def parse_max_memory(text: str | None) -> dict[int | str, int] | None:
    """``"0=20GiB,cpu=64GiB"`` -> ``{0: 21474836480, "cpu": 68719476736}``."""
    if not text:
        return None
    limits: dict[int | str, int] = {}
    for part in text.split(","):
        device, _, size = part.partition("=")
        device = device.strip()
        match = _SIZE.match(size)
        if not device or match is None:
            raise ConfigError(
                "--max-memory takes DEVICE=SIZE pairs separated by commas "
                f"(e.g. 0=20GiB,cpu=64GiB), not '{text}'"
            )
        key: int | str = int(device) if device.isdigit() else device
        if isinstance(key, str) and key not in ("cpu", "disk"):
            raise ConfigError(
                f"--max-memory devices are GPU numbers or cpu, not '{device}'"
            )
        unit = (match.group(2) or "B").lower()
        limits[key] = int(float(match.group(1)) * _UNITS[unit])
    return limits


def placement(model: Any) -> dict[str, str]:
    """Module name -> device accelerate chose; ``{"": device}`` when not spread."""
    found = getattr(model, "hf_device_map", None)
    if found:
        return {name: str(dev) for name, dev in found.items()}
    try:
        return {"": str(next(model.parameters()).device)}
    except StopIteration:
        return {}


def input_device(model: Any) -> Any:
    """Where a spread model wants its input ids: its token embedding's device."""
    return model.get_input_embeddings().weight.device


class DeviceStats(Protocol):
    """Synchronises and reads the allocator of the devices a run uses."""

    def synchronize(self) -> None: ...

    def reset_peak(self) -> None: ...

    def peak_bytes(self) -> int: ...


class CudaStats:
    """DeviceStats over the CUDA devices ``model`` has tensors on."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices or [0]

    @classmethod
    def for_model(cls, model: Any) -> CudaStats:
        indices = sorted(
            {p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"}
        )
        return cls(indices)

    def synchronize(self) -> None:
        import torch

        for i in self.indices:
            torch.cuda.synchronize(i)

    def reset_peak(self) -> None:
        import torch

        for i in self.indices:
            torch.cuda.reset_peak_memory_stats(i)

    def peak_bytes(self) -> int:
        import torch

        return sum(int(torch.cuda.max_memory_allocated(i)) for i in self.indices)


class PhaseClock:
    """A generate() streamer: one clock reading per step, peaks per phase.

    ``stats`` (CUDA, or None on CPU) is synchronised before every reading; its
    peak is reset before the request (``start``), read and reset at the first
    new token, and read after the last.
    """

    def __init__(self, stats: DeviceStats | None = None) -> None:
        import time

        self._now = time.perf_counter
        self.stats = stats
        self.times: list[float] = []
        self.prefill_peak_bytes: int | None = None
        self.decode_peak_bytes: int | None = None

    def start(self) -> float:
        """Synchronise, reset the peak and return ``t0``."""
        if self.stats is not None:
            self.stats.synchronize()
            self.stats.reset_peak()
        return self._now()

    def put(self, value: Any) -> None:
        # generate() first puts the 2-D prompt, then one 1-D step of new tokens.
        if value.dim() > 1:
            return
        if self.stats is not None:
            self.stats.synchronize()
        self.times.append(self._now())
        if self.stats is not None and len(self.times) == 1:
            self.prefill_peak_bytes = self.stats.peak_bytes()
            self.stats.reset_peak()

    def end(self) -> None:
        if self.stats is not None:
            self.stats.synchronize()
            # With one new token there is no decode phase.
            if len(self.times) > 1:
                self.decode_peak_bytes = self.stats.peak_bytes()
