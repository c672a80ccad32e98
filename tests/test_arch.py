"""Architecture arithmetic against tiny real models of every supported family.

Each test builds a tiny randomly initialised model from a config, then checks
that the computed parameter count equals the model's real one and that the
computed KV-cache bytes equal the bytes of the cache the model fills, at
contexts shorter and longer than its window.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from llmarch import arch
from llmarch.kvcache import measured_kv_bytes

COMMON = dict(
    vocab_size=97,
    max_position_embeddings=256,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
LLAMA_SHAPE = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)

CONFIGS = {
    "llama": dict(model_type="llama", **LLAMA_SHAPE, tie_word_embeddings=False),
    "llama-bias": dict(
        model_type="llama", **LLAMA_SHAPE, attention_bias=True, mlp_bias=True
    ),
    "mistral": dict(model_type="mistral", **LLAMA_SHAPE, sliding_window=6),
    "mixtral": dict(
        model_type="mixtral", **LLAMA_SHAPE, num_local_experts=4, num_experts_per_tok=2
    ),
    "qwen2": dict(model_type="qwen2", **LLAMA_SHAPE, tie_word_embeddings=True),
    "qwen3": dict(model_type="qwen3", **LLAMA_SHAPE),
    "qwen3_moe": dict(
        model_type="qwen3_moe",
        **LLAMA_SHAPE,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        decoder_sparse_step=1,
        mlp_only_layers=[1],
    ),
    "phi3": dict(
        model_type="phi3",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=7,
    ),
    "gemma3": dict(
        model_type="gemma3_text",
        **LLAMA_SHAPE,
        sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
    "gpt_oss": dict(
        model_type="gpt_oss",
        hidden_size=32,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=6,
        layer_types=["sliding_attention", "full_attention"],
    ),
    "deepseek_v3": dict(
        model_type="deepseek_v3",
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        q_lora_rank=12,
        kv_lora_rank=8,
        qk_nope_head_dim=8,
        qk_rope_head_dim=4,
        v_head_dim=6,
        n_group=1,
        topk_group=1,
    ),
    "falcon": dict(
        model_type="falcon",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        multi_query=True,
        new_decoder_architecture=False,
        parallel_attn=True,
        bias=False,
    ),
    "falcon-new": dict(
        model_type="falcon",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_kv_heads=2,
        new_decoder_architecture=True,
        bias=True,
    ),
    "llama4": dict(
        model_type="llama4_text",
        **LLAMA_SHAPE,
        intermediate_size_mlp=40,
        num_local_experts=4,
        num_experts_per_tok=1,
        moe_layers=[1, 2],
        no_rope_layers=[1, 1, 0],
        attention_chunk_size=6,
    ),
    "gpt2": dict(model_type="gpt2", n_embd=32, n_layer=2, n_head=4, n_positions=64),
    "gemma4": dict(
        model_type="gemma4_text",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        global_head_dim=16,
        sliding_window=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        hidden_size_per_layer_input=4,
        vocab_size_per_layer_input=97,
        num_kv_shared_layers=3,
        use_double_wide_mlp=True,
    ),
    "gemma4-unified": dict(
        model_type="gemma4_unified_text",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        global_head_dim=16,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        sliding_window=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        hidden_size_per_layer_input=0,
    ),
    "gemma4-moe": dict(
        model_type="gemma4_text",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        global_head_dim=16,
        num_global_key_value_heads=1,
        attention_k_eq_v=True,
        sliding_window=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        hidden_size_per_layer_input=0,
        enable_moe_block=True,
        num_experts=4,
        top_k_experts=2,
        moe_intermediate_size=8,
    ),
}


def _build(name: str):
    fields = dict(CONFIGS[name])
    config = AutoConfig.for_model(fields.pop("model_type"), **{**COMMON, **fields})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    return config, model


def _window(a: arch.Architecture) -> int | None:
    windows = [layer.window for layer in a.layers if layer.window]
    return min(windows) if windows else None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_count_equals_the_real_model(name):
    config, model = _build(name)
    a = arch.from_config(config)
    assert a.params_total == sum(p.numel() for p in model.parameters())
    assert a.params_active <= a.params_total


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kv_cache_equals_the_filled_cache(name):
    config, model = _build(name)
    a = arch.from_config(config)
    window = _window(a)
    contexts = (
        [3, 9] if window is None else [window - 2, window - 1, window, window + 5]
    )
    for tokens in contexts:
        ids = torch.randint(3, 90, (2, tokens))
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(input_ids=ids, past_key_values=cache, use_cache=True)
        expected = a.kv_bytes(tokens=tokens, batch=2, bytes_per_element=4)
        assert measured_kv_bytes(cache) == expected, (name, tokens)


def test_active_parameters_by_hand():
    # mixtral tiny: 3 layers of 4 experts, 2 active; one expert = 3 * 32 * 48
    config, _ = _build("mixtral")
    a = arch.from_config(config)
    assert a.params_total - a.params_active == 3 * 2 * 3 * 32 * 48
    assert (a.experts, a.experts_per_token) == (4, 2)


def test_attention_kinds():
    kinds = {
        name: arch.from_config(_build(name)[0]).attention_kind()
        for name in ("llama", "falcon", "gpt2", "deepseek_v3")
    }
    assert kinds == {
        "llama": "GQA 2:1",
        "falcon": "MQA",
        "gpt2": "MHA",
        "deepseek_v3": "MLA",
    }


def test_mla_caches_the_latent():
    config, _ = _build("deepseek_v3")
    a = arch.from_config(config)
    # per layer: kv_lora_rank 8 + qk_rope_head_dim 4 elements per token
    assert a.kv_bytes_per_token(bytes_per_element=1) == 3 * (8 + 4)
    # plain MHA with 4 heads of keys 8 + 4 = 12 and values 6
    assert a.mha_kv_bytes(tokens=10, bytes_per_element=2) == 10 * 3 * 4 * (12 + 6) * 2


def test_gemma4_shared_layers_hold_no_cache():
    config, _ = _build("gemma4")
    a = arch.from_config(config)
    assert [layer.stores_kv for layer in a.layers] == [True] * 3 + [False] * 3
    assert [layer.head_dim for layer in a.layers] == [8, 8, 16] * 2
    # 2 sliding layers: 2 heads * 2 * 8; 1 full: 2 heads * 2 * 16
    # (no global KV-head count set, so the full layer keeps 2 KV heads)
    assert a.kv_bytes_per_token(bytes_per_element=1) == 2 * 32 + 64


def test_unsupported_family_and_missing_fields():
    config = AutoConfig.for_model("bert")
    with pytest.raises(arch.UnsupportedArchitecture, match="model_type 'bert'"):
        arch.from_config(config)

    class Partial:
        model_type = "llama"
        hidden_size = 32

    with pytest.raises(arch.UnsupportedArchitecture, match="num_hidden_layers"):
        arch.from_config(Partial())
