"""This machine's limits: sustained memory bandwidth and matmul FLOP/s.

Methods (each timed ``TRIALS`` times after a warm-up; the best trial counts,
as STREAM does, because slower trials only add interference)

- **read bandwidth**: ``torch.mv`` of a float32 matrix of ``BANDWIDTH_BYTES``
  (far larger than any cache) with a vector: the access pattern of a decode
  step, which reads every weight once per token. Bytes = the matrix's bytes
  (the vector and result are negligible); bandwidth = bytes / seconds.
- **copy bandwidth** (shown for reference): ``dst.copy_(src)`` of the same
  size, counted as 2 x bytes (read + write), STREAM's convention.
- **matmul FLOP/s** per dtype: ``torch.mm`` of two ``n x n`` matrices,
  ``2 n^3`` floating-point operations (a multiply and an add per term).

On CUDA, the clock is read after ``torch.cuda.synchronize()``. Figures are
cached per machine (CPU model and cores, or GPU name) in
``<cache>/hardware.json``; ``llmarch hardware --refresh`` measures again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from llmarch import paths
from llmarch.sysinfo import machine_info

log = logging.getLogger(__name__)

TRIALS = 5
BANDWIDTH_BYTES = {"cpu": 512 * 2**20, "cuda": 2 * 2**30}
MATMUL_N = {"cpu": 1024, "cuda": 8192}
CPU_DTYPES = ("float32", "bfloat16")
CUDA_DTYPES = ("float32", "bfloat16", "float16")
CACHE_FILE = "hardware.json"
METHOD = (
    "read: torch.mv over a {mib} MiB float32 matrix (bytes of the matrix / s); "
    "copy: tensor copy, 2 x bytes / s; matmul: torch.mm of {n}x{n}, 2n^3 "
    "FLOP / s; best of {trials} after a warm-up"
)


@dataclass
class DeviceLimits:
    """Measured limits of one device."""

    device: str  # cpu | cuda
    name: str
    read_bandwidth: float  # bytes/s
    copy_bandwidth: float  # bytes/s
    matmul_flops: dict[str, float]  # dtype -> FLOP/s
    method: str
    measured_at: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def bandwidth(self) -> float:
        """The bandwidth a decode step can reach: the read figure."""
        return self.read_bandwidth

    def flops(self, dtype: str) -> float | None:
        """Matmul FLOP/s for a dtype (float16 falls back to bfloat16's)."""
        return self.matmul_flops.get(dtype) or self.matmul_flops.get(
            "bfloat16" if dtype == "float16" else dtype
        )


def _best(fn: Callable[[], None], sync: Callable[[], None], trials: int) -> float:
    fn()  # warm-up: page faults, kernel selection
    sync()
    best = float("inf")
    for _ in range(trials):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def measure(
    device: str = "cpu",
    *,
    bandwidth_bytes: int | None = None,
    matmul_n: int | None = None,
    trials: int = TRIALS,
) -> DeviceLimits:
    """Measure one device's bandwidth and matmul FLOP/s (about 10 s on CPU)."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    size = bandwidth_bytes or BANDWIDTH_BYTES["cuda" if cuda else "cpu"]
    n = matmul_n or MATMUL_N["cuda" if cuda else "cpu"]

    cols = 4096
    rows = max(size // (4 * cols), 1)
    matrix = torch.randn(rows, cols, device=device)
    vector = torch.randn(cols, device=device)
    read_s = _best(lambda m=matrix, v=vector: torch.mv(m, v), sync, trials)
    read = matrix.numel() * matrix.element_size() / read_s
    copy_dst = torch.empty_like(matrix)
    copy_s = _best(lambda d=copy_dst, m=matrix: d.copy_(m), sync, trials)
    copy = 2 * matrix.numel() * matrix.element_size() / copy_s
    del matrix, copy_dst

    flops = {}
    for name in CUDA_DTYPES if cuda else CPU_DTYPES:
        dtype = getattr(torch, name)
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        mm_s = _best(lambda a=a, b=b: torch.mm(a, b), sync, trials)
        flops[name] = 2 * n**3 / mm_s
    info = machine_info()
    gpu = info.get("gpu") or {}
    return DeviceLimits(
        device="cuda" if cuda else "cpu",
        name=str(gpu.get("name")) if cuda else str(info.get("cpu_model")),
        read_bandwidth=read,
        copy_bandwidth=copy,
        matmul_flops=flops,
        method=METHOD.format(mib=rows * cols * 4 // 2**20, n=n, trials=trials),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        details={
            "cores": info.get("cpu_affinity"),
            "torch_threads": info.get("torch_threads"),
            "ram_bytes": info.get("ram_bytes"),
            "gpu": gpu or None,
        },
    )


def machine_key(device: str = "cpu") -> str:
    """The cache key: what decides these limits (see predict.hardware_key)."""
    from llmarch.predict import hardware_key

    return hardware_key(machine_info(), device)


def _cache_path() -> Any:
    return paths.cache_dir() / CACHE_FILE


def cached(device: str = "cpu") -> DeviceLimits | None:
    """This machine's limits from the cache, or None."""
    path = _cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(machine_key(device))
    if not entry:
        return None
    try:
        return DeviceLimits(**entry)
    except TypeError:
        return None


def limits(device: str = "cpu", *, refresh: bool = False) -> DeviceLimits:
    """Cached limits, measured (and cached) when missing or on ``refresh``."""
    found = None if refresh else cached(device)
    if found is not None:
        return found
    found = measure(device)
    path = _cache_path()
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        data = {}
    data[machine_key(device)] = asdict(found)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
    except OSError as exc:  # a read-only cache: measure each time
        log.warning("cannot cache hardware figures in %s: %s", path, exc)
    return found


def as_dict(found: DeviceLimits) -> dict[str, Any]:
    return asdict(found)


# -- published figures of common accelerators ---------------------------------


@dataclass(frozen=True)
class KnownDevice:
    """A device's published memory bandwidth and dense matmul peak."""

    name: str
    memory_bytes: int
    bandwidth: float  # bytes/s
    matmul_flops: dict[str, float]  # dtype -> FLOP/s, dense (no sparsity)
    source: str = "vendor data sheet"

    def as_limits(self) -> dict[str, Any]:
        return {
            "device": "named",
            "name": self.name,
            "read_bandwidth": self.bandwidth,
            "matmul_flops": self.matmul_flops,
            "method": f"published figures ({self.source})",
        }


def _dev(name: str, gb: float, tbs: float, bf16: float | None, fp32: float,
         fp16: float | None = None) -> KnownDevice:  # fmt: skip
    flops = {"float32": fp32 * 1e12}
    if bf16:
        flops["bfloat16"] = bf16 * 1e12
    flops["float16"] = (fp16 or bf16 or fp32) * 1e12
    return KnownDevice(name, int(gb * 1e9), tbs * 1e12, flops)


# Dense tensor-core bf16/fp16 and plain fp32 (no TF32) TFLOP/s, TB/s, GB.
KNOWN_DEVICES: dict[str, KnownDevice] = {
    "h100-sxm": _dev("NVIDIA H100 SXM 80GB", 80, 3.35, 989, 67),
    "h100-pcie": _dev("NVIDIA H100 PCIe 80GB", 80, 2.0, 756, 51),
    "h200": _dev("NVIDIA H200 141GB", 141, 4.8, 989, 67),
    "a100-80gb": _dev("NVIDIA A100 SXM 80GB", 80, 2.039, 312, 19.5),
    "a100-40gb": _dev("NVIDIA A100 40GB", 40, 1.555, 312, 19.5),
    "l40s": _dev("NVIDIA L40S 48GB", 48, 0.864, 362, 91.6),
    "l4": _dev("NVIDIA L4 24GB", 24, 0.300, 121, 30.3),
    "a10": _dev("NVIDIA A10 24GB", 24, 0.600, 125, 31.2),
    "t4": _dev("NVIDIA T4 16GB", 16, 0.320, None, 8.1, fp16=65),
    "rtx-4090": _dev("NVIDIA GeForce RTX 4090 24GB", 24, 1.008, 165, 82.6),
    "rtx-3090": _dev("NVIDIA GeForce RTX 3090 24GB", 24, 0.936, 71, 35.6),
    "mi300x": _dev("AMD Instinct MI300X 192GB", 192, 5.3, 1307, 163.4),
}


def known_device(name: str) -> KnownDevice:
    from llmarch.errors import ConfigError

    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    if key not in KNOWN_DEVICES:
        raise ConfigError(
            f"unknown device {name!r}: use one of {', '.join(KNOWN_DEVICES)}"
        )
    return KNOWN_DEVICES[key]
