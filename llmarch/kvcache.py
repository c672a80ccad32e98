"""The measured side of the KV cache: bytes a transformers cache object holds.

The computed side (from a model config) lives in ``llmarch.arch``.
"""

from __future__ import annotations

from typing import Any


def measured_kv_bytes(cache: Any) -> int:
    """Bytes of the key and value tensors a transformers cache holds now."""
    cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoder caches
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total
