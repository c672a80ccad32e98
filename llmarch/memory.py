"""Memory: what a model's weights take, what a run peaks at, what is free.

On CPU the peak is the process's peak resident set size (``VmHWM`` in
``/proc/self/status``). Linux lets a process reset that mark by writing ``5`` to
``/proc/self/clear_refs``; where that fails the mark cannot be reset and the
figure is the peak since the process started (``ru_maxrss``). On CUDA the
peak is the caching allocator's ``max_memory_allocated`` since its last reset.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

import psutil

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def release_free_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS shows live memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss(*, release_heap: bool = True) -> bool:
    """Reset the process's peak RSS mark; False where the OS does not allow it.

    With ``release_heap``, freed heap pages are returned to the OS first, so
    that memory an earlier run freed does not count towards the next run's
    peak. That costs the next run page faults (about 4 % of decode speed for
    Gemma 3 270M on CPU), so the bench releases only when the setting changes.
    """
    if release_heap:
        release_free_heap()
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's peak resident set size in bytes."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int:
    """The process's resident set size now."""
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Peak memory over a block: RSS on CPU, the allocator's peak on CUDA.

    >>> with PeakMemory("cpu") as peak:
    ...     work()
    >>> peak.bytes
    """

    def __init__(self, device: str, *, release_heap: bool = True) -> None:
        self.device = device
        self.release_heap = release_heap
        self.bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss(release_heap=self.release_heap)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated()
        else:
            self.bytes = peak_rss_bytes()


def available_bytes(device: str) -> int:
    """Memory free for a new model on ``device`` (host RAM or the GPU's)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    return int(psutil.virtual_memory().available)


def _quant_state_tensors(tensor: Any) -> list[Any]:
    """Tensors bitsandbytes keeps beside a quantised weight, not as parameters.

    ``Int8Params`` hold their float32 row scales in ``SCB``; ``Params4bit``
    hold a ``quant_state`` with the block absmax, the code book and, with
    double quantisation, a nested state with its own absmax and code.
    """
    extra = []
    scb = getattr(tensor, "SCB", None)
    if scb is not None:
        extra.append(scb)
    state = getattr(tensor, "quant_state", None)
    while state is not None:
        for name in ("absmax", "code", "offset"):
            value = getattr(state, name, None)
            if value is not None and hasattr(value, "data_ptr"):
                extra.append(value)
        state = getattr(state, "state2", None)
    return extra


def _weight_tensors(model: Any) -> list[Any]:
    tensors = []
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensors.append(tensor)
        tensors.extend(_quant_state_tensors(tensor))
    return tensors


def weight_bytes_by_device(model: Any) -> dict[str, int]:
    """Bytes of parameters, buffers and quantisation state, per device, each once.

    Tied tensors (one storage) count once; a quantised weight's scales count
    with it. Keys are torch device strings (``cpu``, ``cuda:0``, ``meta``).
    """
    seen: set[tuple[str, int]] = set()
    totals: dict[str, int] = {}
    for tensor in _weight_tensors(model):
        device = str(tensor.device)
        key = (device, tensor.data_ptr())
        if key in seen:
            continue
        seen.add(key)
        totals[device] = totals.get(device, 0) + tensor.numel() * tensor.element_size()
    return totals


def module_weight_bytes(model: Any) -> int:
    """Bytes of a torch module's parameters, buffers and quantisation state."""
    return sum(weight_bytes_by_device(model).values())
