"""KV-cache size: computed from a model config, and measured from a filled cache.

Computed size for a cache that has processed ``T`` tokens for a batch of ``B``::

    sum over layers l of 2 * B * kv_heads(l) * head_dim(l) * bytes * held(l, T)

where ``held(l, T) = T`` on a full-attention layer and ``min(T, W - 1)`` on a
sliding-window layer of window ``W``. A window of ``W`` covers the token being
processed and the ``W - 1`` before it, so between decode steps a cache needs to
keep only ``W - 1`` tokens; this is what transformers' dynamic cache keeps.

After ``generate`` with a prompt of ``P`` tokens and ``N`` new tokens, the cache
has processed ``T = P + N - 1`` tokens: the last new token is never fed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmarch.errors import ModelError


@dataclass(frozen=True)
class LayerKV:
    """What one decoder layer keeps per token: heads, head size, window."""

    kv_heads: int
    head_dim: int
    window: int | None = None  # None: full attention

    def held_tokens(self, tokens: int) -> int:
        if self.window is None:
            return tokens
        return min(tokens, self.window - 1)


def layers_from_config(config: Any) -> list[LayerKV]:
    """Per-layer KV shapes from a transformers config (text part)."""
    config = getattr(config, "get_text_config", lambda: config)()
    n_layers = config.num_hidden_layers
    n_heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    window = getattr(config, "sliding_window", None)

    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:
        # Configs without layer_types slide on every layer when a window is set
        # (Mistral style) unless use_sliding_window says otherwise (Qwen2 style).
        slides = window is not None and getattr(config, "use_sliding_window", True)
        layer_types = ["sliding_attention" if slides else "full_attention"] * n_layers
    if len(layer_types) != n_layers:
        raise ModelError(
            f"config lists {len(layer_types)} layer types for {n_layers} layers; "
            "fix the model's config.json"
        )

    layers = []
    for kind in layer_types:
        if kind == "sliding_attention":
            layers.append(LayerKV(kv_heads, head_dim, window))
        elif kind == "full_attention":
            layers.append(LayerKV(kv_heads, head_dim, None))
        else:
            raise ModelError(
                f"layer type '{kind}' has no KV-cache arithmetic in llmarch yet"
            )
    return layers


def kv_bytes_per_token(layers: list[LayerKV], *, bytes_per_element: int) -> int:
    """Bytes one token adds to the cache while no window is full."""
    return sum(2 * layer.kv_heads * layer.head_dim for layer in layers) * (
        bytes_per_element
    )


def computed_kv_bytes(
    layers: list[LayerKV], *, tokens: int, batch: int, bytes_per_element: int
) -> int:
    """Bytes the cache holds after processing ``tokens`` tokens per sequence."""
    if tokens < 0 or batch < 1 or bytes_per_element < 1:
        raise ValueError("tokens >= 0, batch >= 1 and bytes_per_element >= 1")
    per_batch_row = sum(
        2 * layer.kv_heads * layer.head_dim * layer.held_tokens(tokens)
        for layer in layers
    )
    return batch * per_batch_row * bytes_per_element


def measured_kv_bytes(cache: Any) -> int:
    """Bytes of the key and value tensors a transformers cache holds now."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total
