"""Weight formats: bitsandbytes 8-bit and 4-bit loading, and their arithmetic.

``--quant bnb-8bit`` loads every ``nn.Linear`` that transformers converts as
``Linear8bitLt`` (LLM.int8()); ``--quant bnb-4bit`` as ``Linear4bit`` in NF4.
Transformers leaves the output head (and whatever is tied to it, such as the
input embedding of a tied model) and the model's ``_keep_in_fp32_modules``
unconverted; embeddings and norms are never converted.

Weight bytes by arithmetic, from the model built on the meta device (shapes
only, no weights), with ``d`` the bytes per element of ``--dtype``:

- ``none``: every parameter and buffer, ``numel * d`` (buffers in their own
  dtype), tied tensors once.
- ``bnb-8bit``, per converted Linear of ``out x in``: ``out * in`` bytes of
  int8 weight plus ``4 * out`` bytes of float32 row scales (``SCB``), plus the
  bias at ``d``.
- ``bnb-4bit``, per converted Linear: ``ceil(out * in / 2)`` bytes of packed
  4-bit weight, ``4 * ceil(out * in / 64)`` bytes of float32 absmax (one per
  block of 64), ``64`` bytes of the 16-entry float32 code book, and the bias
  at ``d``.
- everything not converted as for ``none``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from llmarch.errors import BackendError, ConfigError

QUANTS = ("none", "bnb-8bit", "bnb-4bit")
BLOCKSIZE_4BIT = 64  # bitsandbytes' default 4-bit block
CODE_4BIT_BYTES = 16 * 4  # the NF4 code book: 16 float32 values
# bitsandbytes' CPU 4-bit kernel (AVX512-BF16) repacks weights in tiles of 32
# output rows and needs whole 64-element blocks along each input row.
CPU_4BIT_TILE_ROWS = 32
INSTALL_HINT = "pip install 'llmarch[gpu]' (or pip install bitsandbytes)"


@dataclass
class WeightArithmetic:
    """Weight bytes of a model in one format, by arithmetic, with the parts."""

    quant: str
    dtype: str
    total_bytes: int
    quantized_linears: int
    quantized_weight_bytes: int  # int8 / packed 4-bit weights
    scale_bytes: int  # SCB, or absmax plus code books
    other_bytes: int  # everything left in the compute dtype (or its own)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_quant(quant: str) -> None:
    """Refuse an unknown ``--quant``."""
    if quant not in QUANTS:
        raise ConfigError(f"--quant must be one of {', '.join(QUANTS)}, not '{quant}'")


def require_bitsandbytes(quant: str, device: str) -> None:
    """Stop with one line where bitsandbytes is missing or cannot run on device."""
    if quant == "none":
        return
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"--quant {quant} needs bitsandbytes, which is not installed: "
            f"{INSTALL_HINT}."
        ) from exc
    except Exception as exc:  # a broken native library fails at import
        raise BackendError(
            f"bitsandbytes cannot start here ({type(exc).__name__}: {exc}); "
            "use --quant none or reinstall bitsandbytes for this machine."
        ) from exc
    from transformers.integrations import validate_bnb_backend_availability

    kind = "cuda" if device.startswith("cuda") else device
    try:
        ok = validate_bnb_backend_availability(raise_exception=False)
    except Exception:  # noqa: BLE001 - any failure means no usable backend
        ok = False
    supported = _bnb_device_types()
    if not ok or kind not in supported:
        where = ", ".join(sorted(supported))
        raise BackendError(
            f"bitsandbytes cannot run --quant {quant} on {device} here (it supports "
            f"{where} on this machine); use --device "
            f"{'cuda' if kind != 'cuda' else 'cpu'} or --quant none."
        )


def _bnb_device_types() -> set[str]:
    """Device types bitsandbytes has working kernels for on this machine.

    CPU kernels ship with every build; CUDA needs a native library built for
    CUDA, which a wheel without a matching CUDA runtime lacks.
    """
    import torch

    types = {"cpu"}
    if torch.cuda.is_available():
        try:
            from bitsandbytes.cextension import lib

            if getattr(lib, "compiled_with_cuda", False):
                types.add("cuda")
        except (ImportError, RuntimeError, OSError):
            pass
    return types


def bnb_config(quant: str, dtype: Any) -> Any:
    """The transformers ``BitsAndBytesConfig`` for ``quant`` (None for none)."""
    if quant == "none":
        return None
    from transformers import BitsAndBytesConfig

    # Offline, bitsandbytes' CPU backend tries to fetch an optional faster
    # 4-bit kernel from the hub, fails, and falls back to its built-in one,
    # logging two warnings that need no action.
    for name in ("kernels", "bitsandbytes.backends.cpu.ops"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if quant == "bnb-8bit":
        # LLM.int8() casts float32 inputs to float16 and logs a warning on every
        # call, per layer and step; the README states the cast once instead.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=False,
    )


def meta_model(config: Any, dtype: Any) -> Any:
    """The model class for ``config``, built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def skipped_modules(model: Any) -> list[str]:
    """Module names transformers leaves unconverted by default."""
    from transformers.quantizers.base import get_keys_to_not_convert

    skip = set(get_keys_to_not_convert(model))
    skip.update(getattr(model, "_keep_in_fp32_modules", None) or [])
    return sorted(skip)


def converted_linears(
    model: Any, extra_skip: list[str] | None = None
) -> list[tuple[str, Any]]:
    """(name, module) of every Linear transformers' bitsandbytes path converts."""
    from torch import nn
    from transformers.quantizers.quantizers_utils import should_convert_module

    skip = skipped_modules(model) + list(extra_skip or [])
    return [
        (name, module)
        for name, module in model.named_modules()
        if type(module) is nn.Linear and should_convert_module(name, skip)
    ]


def weight_arithmetic(
    config: Any, quant: str, dtype_name: str, *, skip: list[str] | None = None
) -> WeightArithmetic:
    """Weight bytes of ``config``'s model in ``quant`` at compute ``dtype_name``.

    ``skip`` names further modules left unconverted (those accelerate put on
    the CPU when the model is spread over devices).
    """
    from llmarch.backends.transformers_backend import DTYPES

    check_quant(quant)
    dtype = DTYPES[dtype_name]
    model = meta_model(config, dtype)
    linears = converted_linears(model, skip) if quant != "none" else []
    converted = {id(m.weight) for _, m in linears}

    # Everything that stays in its own dtype, each tensor once (ties share one).
    seen: set[int] = set()
    other = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen or id(tensor) in converted:
            continue
        seen.add(id(tensor))
        other += tensor.numel() * tensor.element_size()

    weights = scales = 0
    for _, module in linears:
        n = module.out_features * module.in_features
        if quant == "bnb-8bit":
            weights += n
            scales += 4 * module.out_features
        else:
            weights += math.ceil(n / 2)
            scales += 4 * math.ceil(n / BLOCKSIZE_4BIT) + CODE_4BIT_BYTES
    return WeightArithmetic(
        quant=quant,
        dtype=dtype_name,
        total_bytes=weights + scales + other,
        quantized_linears=len(linears),
        quantized_weight_bytes=weights,
        scale_bytes=scales,
        other_bytes=other,
    )


def check_cpu_4bit_shapes(config: Any, dtype_name: str) -> None:
    """Refuse shapes bitsandbytes' AVX512-BF16 CPU 4-bit kernel cannot repack."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:
        return
    if not has_avx512bf16():
        return
    from llmarch.backends.transformers_backend import DTYPES

    model = meta_model(config, DTYPES[dtype_name])
    bad = [
        name
        for name, m in converted_linears(model)
        if m.in_features % BLOCKSIZE_4BIT or m.out_features % CPU_4BIT_TILE_ROWS
    ]
    if bad:
        raise BackendError(
            f"bitsandbytes' CPU 4-bit kernel needs Linear layers with inputs in "
            f"multiples of {BLOCKSIZE_4BIT} and outputs in multiples of "
            f"{CPU_4BIT_TILE_ROWS}; {bad[0]} is not ({len(bad)} such layers). "
            "Use --quant bnb-8bit, or --device cuda."
        )
