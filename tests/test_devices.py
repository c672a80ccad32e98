"""CUDA clock and peaks per phase, and GPU metadata, with stand-ins for CUDA.

The stand-ins only check the order of calls; no figure they return reaches
a report.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from llmarch.devices import PhaseClock
from llmarch.sysinfo import gpu_info


class RecordingStats:
    """Logs synchronise / reset / read calls; the peak grows by 100 per read."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.peak = 0

    def synchronize(self) -> None:
        self.calls.append("sync")

    def reset_peak(self) -> None:
        self.calls.append("reset")

    def peak_bytes(self) -> int:
        self.calls.append("read")
        self.peak += 100
        return self.peak


def test_every_clock_reading_follows_a_synchronise():
    stats = RecordingStats()
    clock = PhaseClock(stats)
    clock._now = lambda: (stats.calls.append("clock"), 1.0)[1]
    clock.start()
    clock.put(torch.zeros(1, 5))  # the prompt: ignored
    for _ in range(3):
        clock.put(torch.zeros(1))
    clock.end()
    assert stats.calls == [
        "sync", "reset", "clock",  # t0
        "sync", "clock", "read", "reset",  # t1, then the prefill peak
        "sync", "clock",
        "sync", "clock",
        "sync", "read",  # the decode peak
    ]  # fmt: skip
    assert clock.prefill_peak_bytes == 100 and clock.decode_peak_bytes == 200
    assert len(clock.times) == 3


def test_one_new_token_has_no_decode_phase():
    clock = PhaseClock(RecordingStats())
    clock.start()
    clock.put(torch.zeros(1))
    clock.end()
    assert clock.prefill_peak_bytes == 100 and clock.decode_peak_bytes is None


def test_cpu_clock_has_no_phase_peaks():
    clock = PhaseClock(None)
    clock.start()
    clock.put(torch.zeros(2))
    clock.end()
    assert len(clock.times) == 1 and clock.prefill_peak_bytes is None


def test_gpu_metadata_names_every_device_and_the_driver():
    props = [
        SimpleNamespace(name="NVIDIA H200", total_memory=141 * 2**30, major=9, minor=0),
        SimpleNamespace(name="NVIDIA L4", total_memory=24 * 2**30, major=8, minor=9),
    ]
    cuda = SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        get_device_properties=lambda i: props[i],
        version="12.8",
    )
    info = gpu_info(cuda, driver=lambda: "570.86.15")
    assert info["name"] == "NVIDIA H200" and info["count"] == 2
    assert info["driver"] == "570.86.15" and info["cuda"] == "12.8"
    assert [d["capability"] for d in info["devices"]] == ["9.0", "8.9"]


def test_no_gpu_no_metadata():
    cuda = SimpleNamespace(is_available=lambda: False)
    assert gpu_info(cuda, driver=lambda: None) is None
