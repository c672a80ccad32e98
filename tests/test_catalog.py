"""The catalog: each config rebuilds in transformers and matches its published size.

``llmarch.arch`` turns a catalog config into parameter counts and KV-cache
bytes; those must agree with the figures the catalog cites. Three models are
also worked by hand, so that a wrong config and a wrong formula cannot agree
by accident.
"""

from __future__ import annotations

import logging

import pytest
from transformers import AutoConfig

from llmarch import arch
from llmarch.catalog import CatalogEntry, load_catalog

CATALOG = load_catalog()
WITH_CONFIG = [entry for entry in CATALOG.values() if entry.config]

# Published totals that include vision and audio encoders (about 0.45B) the text
# config does not describe: the computed total must fall short by about that.
ENCODER_GAP = {"gemma-4-e2b", "gemma-4-e4b"}

# OpenAI counts gpt-oss's active parameters without the input embedding table.
ACTIVE_WITHOUT_INPUT_EMBEDDING = {"gpt-oss-20b"}


def build_config(entry: CatalogEntry):
    assert entry.config is not None
    fields = dict(entry.config)
    model_type = fields.pop("model_type")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    return AutoConfig.for_model(model_type, **fields)


def architecture(entry: CatalogEntry) -> arch.Architecture:
    return arch.from_config(build_config(entry))


def test_ids_are_lower_case_and_sourced():
    for model_id, entry in CATALOG.items():
        assert model_id == model_id.lower()
        assert entry.params_source, model_id
        if entry.config:
            assert entry.config_source, model_id
            assert "model_type" in entry.config, model_id
        if entry.params_active_published:
            assert entry.params_active_published < (entry.params_published or 0)


@pytest.mark.parametrize("entry", WITH_CONFIG, ids=lambda e: e.id)
def test_config_rebuilds_in_transformers(entry: CatalogEntry):
    config = build_config(entry)
    assert config.model_type == entry.config["model_type"]
    layer_types = entry.config.get("layer_types")
    if layer_types is not None:
        assert len(layer_types) == entry.config["num_hidden_layers"]
        assert list(config.layer_types) == layer_types


@pytest.mark.parametrize("entry", WITH_CONFIG, ids=lambda e: e.id)
def test_total_matches_published(entry: CatalogEntry):
    a = architecture(entry)
    published = entry.params_published
    assert published
    if entry.id in ENCODER_GAP:
        assert 0.3e9 < published - a.params_total < 0.6e9, a.params_total
    else:
        assert a.params_total == pytest.approx(published, rel=0.02)


@pytest.mark.parametrize(
    "entry",
    [e for e in WITH_CONFIG if e.params_active_published],
    ids=lambda e: e.id,
)
def test_active_matches_published(entry: CatalogEntry):
    a = architecture(entry)
    active = a.params_active
    if entry.id in ACTIVE_WITHOUT_INPUT_EMBEDDING:
        active = a.params_active_compute
    assert active == pytest.approx(entry.params_active_published, rel=0.03)


# -- worked by hand ------------------------------------------------------------


def test_llama_3_1_8b_by_hand():
    a = architecture(CATALOG["llama-3.1-8b"])
    # 32 layers x 8 KV heads x (128 + 128) elements x 2 bytes
    assert a.kv_bytes_per_token(bytes_per_element=2) == 32 * 8 * 256 * 2 == 131_072
    embeddings = 2 * 128_256 * 4096  # untied input and output
    attention = 4096 * 4096 * 2 + 2 * 4096 * 1024  # q, o; k, v
    mlp = 3 * 4096 * 14_336
    layer = attention + mlp + 2 * 4096  # two RMSNorms
    assert a.params_total == embeddings + 32 * layer + 4096 == 8_030_261_248
    assert a.attention_kind() == "GQA 4:1"


def test_mistral_7b_window_on_every_layer():
    a = architecture(CATALOG["mistral-7b"])
    assert len(a.layers) == 32
    assert all(
        layer.attention == "sliding" and layer.window == 4096 for layer in a.layers
    )
    per_token = a.kv_bytes_per_token(bytes_per_element=2)
    assert per_token == 131_072
    # the cache keeps the window's 4095 earlier tokens, then stops growing
    assert a.kv_bytes(tokens=1000, bytes_per_element=2) == 1000 * per_token
    assert a.kv_bytes(tokens=100_000, bytes_per_element=2) == 4095 * per_token


def test_gpt_oss_20b_alternates_sliding_and_full():
    a = architecture(CATALOG["gpt-oss-20b"])
    assert len(a.layers) == 24
    for i, layer in enumerate(a.layers):
        assert (layer.attention, layer.window) == (
            ("sliding", 128) if i % 2 == 0 else ("full", None)
        )
        assert (layer.kv_heads, layer.head_dim, layer.q_heads) == (8, 64, 64)
    per_layer = 8 * (64 + 64) * 2  # bytes per token, bf16
    assert a.kv_bytes_per_token(bytes_per_element=2) == 24 * per_layer == 49_152
    assert a.kv_bytes(tokens=1000, bytes_per_element=2) == per_layer * (
        12 * 1000 + 12 * 127
    )


def test_gemma_4_e2b_shares_kv():
    a = architecture(CATALOG["gemma-4-e2b"])
    storing = [layer for layer in a.layers if layer.stores_kv]
    assert len(storing) == 15  # layers 15-34 reuse layers 13 and 14
    full = [layer for layer in storing if layer.attention == "full"]
    assert [(layer.kv_heads, layer.head_dim) for layer in full] == [(1, 512)] * 3
    # 12 sliding x 1 x (256 + 256) + 3 full x 1 x (512 + 512), x 2 bytes
    assert a.kv_bytes_per_token(bytes_per_element=2) == (12 * 512 + 3 * 1024) * 2
