"""The machine and library versions a run is measured on."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "gguf",
    "bitsandbytes",
    "optimum-quanto",
    "llmarch",
)


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where available."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def gpu_driver() -> str | None:
    """The NVIDIA driver version: NVML (pynvml) when installed, else nvidia-smi."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            found = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return found.decode() if isinstance(found, bytes) else str(found)
    except Exception:  # noqa: BLE001 - missing module or no NVML: try nvidia-smi
        pass
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip().splitlines()[0] or None
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def gpu_info(cuda: Any = None, driver: Any = gpu_driver) -> dict[str, Any] | None:
    """GPU names, memory, compute capability, CUDA and driver; None without CUDA.

    ``cuda`` is ``torch.cuda`` unless a test passes a stand-in; the first
    device's name and memory are repeated at the top level.
    """
    if cuda is None:
        try:
            import torch
        except ImportError:
            return None
        cuda = torch.cuda
        cuda_version = torch.version.cuda
    else:
        cuda_version = getattr(cuda, "version", None)
    if not cuda.is_available():
        return None
    gpus = []
    for i in range(cuda.device_count()):
        props = cuda.get_device_properties(i)
        gpus.append(
            {
                "index": i,
                "name": props.name,
                "memory_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return {
        "name": gpus[0]["name"] if gpus else None,
        "memory_bytes": gpus[0]["memory_bytes"] if gpus else None,
        "count": len(gpus),
        "devices": gpus,
        "cuda": cuda_version,
        "driver": driver(),
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and GPU (if any)."""
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    return {
        "cpu_model": cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "torch_threads": threads,
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu_info(),
    }
