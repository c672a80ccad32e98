"""The KV cache: what a transformers cache object holds, and the cache formats.

The computed side for the plain format (from a model config) lives in
``llmarch.arch``; this module adds the other formats ``--kv-cache`` offers:

- ``dynamic``: transformers' default cache, keys and values in the compute
  dtype.
- ``offloaded``: the same cache, with each full-attention layer moved to CPU
  memory between uses (CUDA only); the same bytes as ``dynamic``, held mostly
  in host memory.
- ``fp8``: transformers' ``QuantizedCache`` with the fp8 backend: keys and
  values in float8 e4m3 (1 byte per element) plus one float32 scale for the
  keys and one for the values of each layer.
- ``int4``, ``int2``: ``QuantizedCache`` with the optimum-quanto backend
  (KIVI-style): the oldest tokens in 4 or 2 bits, grouped by 64 elements with
  a scale and a shift per group in the compute dtype; the newest tokens, up to
  the residual length (128), in the compute dtype until they are quantised
  together.

Quantised caches exist only for models whose every layer attends fully.
"""

from __future__ import annotations

import math
from typing import Any

from llmarch.errors import ConfigError

KV_CACHES = ("dynamic", "offloaded", "fp8", "int4", "int2")
QUANTO_GROUP = 64  # transformers' q_group_size default
QUANTO_RESIDUAL = 128  # transformers' residual_length default
FP8_SCALE_BYTES = 4  # one float32 per tensor


def _tensor_bytes(value: Any) -> int:
    """Bytes of a tensor, a tuple of them, or a tensor subclass's inner tensors."""
    if value is None:
        return 0
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    flatten = getattr(value, "__tensor_flatten__", None)
    if flatten is not None:  # quanto's QBitsTensor, PackedTensor
        names, _ctx = flatten()
        return sum(_tensor_bytes(getattr(value, n)) for n in names)
    if hasattr(value, "numel") and hasattr(value, "element_size"):
        return int(value.numel() * value.element_size())
    return 0


def measured_kv_bytes(cache: Any) -> int:
    """Bytes of the key and value tensors a transformers cache holds now.

    Quantised layers count their packed data and scales as well as the
    full-precision residual.
    """
    cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoder caches
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values", "_quantized_keys", "_quantized_values"):
            total += _tensor_bytes(getattr(layer, name, None))
    return total


def check_kv_cache(kind: str, *, device: str, arch: Any) -> None:
    """Refuse a cache format this model, device or installation cannot use."""
    if kind not in KV_CACHES:
        raise ConfigError(
            f"--kv-cache must be one of {', '.join(KV_CACHES)}, not '{kind}'"
        )
    if kind == "offloaded" and not device.startswith("cuda"):
        raise ConfigError(
            "--kv-cache offloaded moves the cache from the GPU to CPU memory; it "
            "needs --device cuda. Use --kv-cache dynamic on CPU."
        )
    if kind in ("fp8", "int4", "int2"):
        if arch is not None and any(layer.window is not None for layer in arch.layers):
            raise ConfigError(
                f"--kv-cache {kind} uses transformers' QuantizedCache, which only "
                "supports models whose every layer attends fully; this model has "
                "sliding-window layers. Use --kv-cache dynamic or offloaded."
            )
    if kind in ("int4", "int2"):
        try:
            import optimum.quanto  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"--kv-cache {kind} needs optimum-quanto: pip install "
                "'llmarch[gpu]' (or pip install optimum-quanto)."
            ) from exc


def generation_options(kind: str) -> dict[str, Any]:
    """GenerationConfig fields that select the cache format."""
    if kind == "dynamic":
        return {}
    if kind == "offloaded":
        return {"cache_implementation": "offloaded"}
    if kind == "fp8":
        return {"cache_implementation": "quantized", "cache_config": {"backend": "fp8"}}
    return {
        "cache_implementation": "quantized",
        "cache_config": {
            "backend": "quanto",
            "nbits": 4 if kind == "int4" else 2,
            "q_group_size": QUANTO_GROUP,
            "residual_length": QUANTO_RESIDUAL,
        },
    }


def _quanto_bytes(elements: int, bits: int, itemsize: int) -> int:
    """Packed data plus a scale and a shift (compute dtype) per group of 64."""
    if elements == 0:
        return 0
    groups = math.ceil(elements / QUANTO_GROUP)
    return math.ceil(elements * bits / 8) + 2 * groups * itemsize


def computed_kv_bytes(
    arch: Any,
    kind: str,
    *,
    prompt_tokens: int,
    new_tokens: int,
    batch: int,
    bytes_per_element: int,
) -> int:
    """Bytes a ``kind`` cache holds after the run, by arithmetic.

    The cache has processed ``T = P + N - 1`` tokens. ``dynamic`` and
    ``offloaded`` hold what ``arch.kv_bytes`` says. ``fp8`` holds 1 byte per
    element plus two float32 scales per layer. ``int4``/``int2`` hold the
    first ``T - r`` tokens quantised and the last ``r = (N - 1) mod 128`` in
    the compute dtype: the prompt is quantised at once, then each decoding
    step adds a token to the residual until it reaches 128 tokens, when
    everything is quantised again and the residual empties.
    """
    tokens = prompt_tokens + new_tokens - 1
    if kind in ("dynamic", "offloaded"):
        return int(
            arch.kv_bytes(
                tokens=tokens, batch=batch, bytes_per_element=bytes_per_element
            )
        )
    total = 0
    for layer in arch.layers:
        if not layer.stores_kv:
            continue
        k = batch * layer.kv_heads * layer.head_dim
        v = batch * layer.kv_heads * layer.v_head_dim
        if kind == "fp8":
            total += (k + v) * tokens + 2 * FP8_SCALE_BYTES
            continue
        bits = 4 if kind == "int4" else 2
        residual = (new_tokens - 1) % QUANTO_RESIDUAL
        quantised = tokens - residual
        for width in (k, v):
            total += _quanto_bytes(width * quantised, bits, bytes_per_element)
            total += width * residual * bytes_per_element
    return total
