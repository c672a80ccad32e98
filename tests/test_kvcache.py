"""KV-cache arithmetic against hand-worked figures, and against real caches."""

from types import SimpleNamespace

import pytest

from llmarch.arch import LayerArch, from_config
from llmarch.backends.transformers_backend import TransformersBackend
from llmarch.models import resolve

# Gemma 3 270M: 18 layers, 1 KV head of 256, window 512 on 15 of the 18 layers.
GEMMA3_270M = SimpleNamespace(
    model_type="gemma3_text",
    vocab_size=262144,
    intermediate_size=2048,
    num_hidden_layers=18,
    num_attention_heads=4,
    num_key_value_heads=1,
    head_dim=256,
    hidden_size=640,
    sliding_window=512,
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
)


def test_gemma3_270m_by_hand():
    a = from_config(GEMMA3_270M)
    assert sum(layer.window is None for layer in a.layers) == 3
    # 2 (K and V) * 18 layers * 1 head * 256 * 4 bytes = 36,864 bytes per token
    assert a.kv_bytes_per_token(bytes_per_element=4) == 36_864
    # 191 tokens: no window is full yet
    assert a.kv_bytes(tokens=191, bytes_per_element=4) == 7_041_024
    # 607 tokens: 3 full layers hold 607, 15 sliding layers hold 511
    # (3*607 + 15*511) * 2 * 256 * 4 = 9486 * 2048
    assert a.kv_bytes(tokens=607, bytes_per_element=4) == 19_427_328
    # batch and dtype scale linearly: bfloat16, batch 4
    assert a.kv_bytes(tokens=607, batch=4, bytes_per_element=2) == 38_854_656
    # parameters: 262,144 * 640 embedding (tied) + 18 layers + final norm,
    # the model card's 268,098,176
    assert a.params_total == 268_098_176
    assert a.params_embedding == 167_772_160


def test_window_boundary():
    layer = LayerArch(
        attention="sliding", window=512, q_heads=1, kv_heads=1, head_dim=1, v_head_dim=1
    )
    assert [layer.held_tokens(t) for t in (510, 511, 512, 513)] == [510, 511, 511, 511]


def test_gqa_and_mha_configs():
    # Llama 3.1 8B: 32 layers, 8 KV heads of 128, bf16:
    # 2 * 32 * 8 * 128 * 2 = 131,072 bytes per token
    llama = SimpleNamespace(
        model_type="llama",
        vocab_size=128256,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        hidden_size=4096,
        tie_word_embeddings=False,
    )
    a = from_config(llama)
    assert a.kv_bytes_per_token(bytes_per_element=2) == 131_072
    assert a.attention_kind() == "GQA 4:1"
    # the published 8,030,261,248 parameters
    assert a.params_total == 8_030_261_248


def test_mistral_style_window_applies_to_every_layer():
    mistral = SimpleNamespace(
        model_type="mistral",
        vocab_size=10,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=4,
        hidden_size=16,
        sliding_window=4,
    )
    a = from_config(mistral)
    assert all(layer.window == 4 for layer in a.layers)
    # each layer holds min(10, 3) = 3 tokens: 2 layers * 2 * 2 heads * 4 * 3 * 1 byte
    assert a.kv_bytes(tokens=10, bytes_per_element=1) == 96


def _backend(folder, **kw):
    backend = TransformersBackend(
        resolve(str(folder)), device="cpu", dtype="float32", **kw
    )
    backend.load()
    return backend


@pytest.mark.parametrize("prompt_tokens", [3, 7, 8, 9, 20])
def test_sliding_window_cache_matches_arithmetic(tiny_gemma3, prompt_tokens):
    backend = _backend(tiny_gemma3)
    sample = backend.generate(prompt_tokens=prompt_tokens, new_tokens=4, batch=2)
    tokens = prompt_tokens + 4 - 1
    assert sample.kv_tokens == tokens
    # 4 sliding layers hold min(T, 7), 1 full layer holds T;
    # 1 KV head of 16, float32, batch 2
    expected = (4 * min(tokens, 7) + tokens) * 2 * 1 * 16 * 4 * 2
    assert sample.kv_bytes_computed == expected
    assert sample.kv_bytes_measured == expected


@pytest.mark.parametrize("batch", [1, 3])
def test_grouped_kv_heads_cache_matches_arithmetic(tiny_llama, batch):
    backend = _backend(tiny_llama)
    sample = backend.generate(prompt_tokens=10, new_tokens=5, batch=batch)
    # 3 layers * 2 * 2 KV heads * 8 * 4 bytes * 14 tokens * batch
    expected = 3 * 2 * 2 * 8 * 4 * 14 * batch
    assert sample.kv_bytes_measured == sample.kv_bytes_computed == expected
