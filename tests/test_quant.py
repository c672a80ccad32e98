"""Weight formats (bitsandbytes), --device-map and KV-cache formats on CPU.

The tiny model here has Linear sizes in multiples of 64, as bitsandbytes' CPU
4-bit kernel needs. Its figures, worked by hand (2 layers, hidden 64, MLP
128, 4 query heads and 2 KV heads of 16, vocabulary 512, untied head):

- Linear weights per layer: q 64x64, k 32x64, v 32x64, o 64x64, gate and up
  128x64, down 64x128 = 36,864 elements in 512 output rows; 73,728 over both.
- left in the compute dtype: 2 x 2 x 64 (norms) + 64 (final norm) + 2 x 512
  x 64 (embedding, head) = 65,856 elements; plus two float32 rotary buffers
  of 8 values (64 bytes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("bitsandbytes")

from typer.testing import CliRunner  # noqa: E402

from llmarch import quant  # noqa: E402
from llmarch.backends.transformers_backend import TransformersBackend  # noqa: E402
from llmarch.errors import BackendError, ConfigError  # noqa: E402
from llmarch.models import resolve  # noqa: E402

OTHER_F32 = 65_856 * 4 + 64
EXPECTED = {
    ("none", "float32"): (73_728 + 65_856) * 4 + 64,  # 558,400
    ("bnb-8bit", "float32"): 73_728 + 4 * 2 * 512 + OTHER_F32,  # 341,312
    # packed halves, absmax per 64-block (1,152 blocks), 14 code books of 64 B
    ("bnb-4bit", "float32"): 73_728 // 2 + 4 * 1_152 + 14 * 64 + OTHER_F32,
    ("bnb-4bit", "bfloat16"): 73_728 // 2 + 4 * 1_152 + 14 * 64 + 65_856 * 2 + 64,
}


def _config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from tests.conftest import _word_tokenizer

    folder = tmp_path_factory.mktemp("tiny64")
    assert _word_tokenizer(folder) <= 512
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(_config()).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("fmt", "dtype"), sorted(EXPECTED))
def test_weight_arithmetic_matches_hand_figures(fmt, dtype):
    found = quant.weight_arithmetic(_config(), fmt, dtype)
    assert found.total_bytes == EXPECTED[(fmt, dtype)]
    assert found.quantized_linears == (0 if fmt == "none" else 14)


def test_hand_figures_spelled_out():
    assert EXPECTED[("none", "float32")] == 558_400
    assert EXPECTED[("bnb-8bit", "float32")] == 341_312
    assert EXPECTED[("bnb-4bit", "float32")] == 305_856
    assert EXPECTED[("bnb-4bit", "bfloat16")] == 174_144


@pytest.mark.parametrize(("fmt", "dtype"), sorted(EXPECTED))
def test_loaded_weights_match_the_arithmetic_to_the_byte(tiny64, fmt, dtype):
    backend = TransformersBackend(
        resolve(str(tiny64)), device="cpu", dtype=dtype, quant=fmt
    )
    info = backend.load()
    assert info.weight_bytes == EXPECTED[(fmt, dtype)]
    assert info.details["weight_bytes_computed"] == EXPECTED[(fmt, dtype)]
    assert info.details["weight_match"] is True
    assert info.details["weight_bytes_by_device"] == {"cpu": info.weight_bytes}
    sample = backend.generate(prompt_tokens=12, new_tokens=4, batch=2)
    assert len(sample.token_times) == 4
    assert sample.kv_bytes_measured == sample.kv_bytes_computed
    backend.close()


def test_unknown_quant_is_refused(tiny64):
    with pytest.raises(ConfigError, match="--quant must be one of"):
        TransformersBackend(resolve(str(tiny64)), device="cpu", quant="gptq")


def test_missing_bitsandbytes_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ConfigError, match=r"llmarch\[gpu\]"):
        quant.require_bitsandbytes("bnb-8bit", "cpu")


def test_bitsandbytes_without_cuda_kernels_is_refused(monkeypatch):
    monkeypatch.setattr(quant, "_bnb_device_types", lambda: {"cpu"})
    with pytest.raises(BackendError, match="cannot run --quant bnb-4bit on cuda"):
        quant.require_bitsandbytes("bnb-4bit", "cuda")


def test_cpu_4bit_shapes_are_checked_before_loading(tiny_llama, monkeypatch):
    import bitsandbytes.functional as bnbf
    from transformers import AutoConfig

    monkeypatch.setattr(bnbf, "has_avx512bf16", lambda: True)
    config = AutoConfig.from_pretrained(str(tiny_llama))  # hidden size 32
    with pytest.raises(BackendError, match="multiples of 64"):
        quant.check_cpu_4bit_shapes(config, "float32")


def test_cli_bad_quant_is_one_line(tiny64):
    from llmarch.cli import app

    result = CliRunner().invoke(
        app, ["bench", str(tiny64), "--device", "cpu", "--quant", "int3"]
    )
    assert result.exit_code == 1
    assert "--quant must be one of none, bnb-8bit, bnb-4bit" in result.output
    assert "Traceback" not in result.output


def test_device_map_auto_on_cpu_puts_everything_on_cpu(tiny64):
    backend = TransformersBackend(
        resolve(str(tiny64)), device="cpu", dtype="float32", device_map="auto"
    )
    info = backend.load()
    by_device = info.details["weight_bytes_by_device"]
    assert set(by_device) == {"cpu"}
    assert sum(by_device.values()) == info.weight_bytes == EXPECTED[("none", "float32")]
    assert set(info.details["device_map"].values()) == {"cpu"}
    sample = backend.generate(prompt_tokens=8, new_tokens=3, batch=1)
    assert sample.kv_bytes_measured == sample.kv_bytes_computed


def test_max_memory_parsing():
    from llmarch.devices import parse_max_memory

    assert parse_max_memory("0=20GiB, cpu=1.5GB") == {0: 20 * 2**30, "cpu": 1.5e9}
    with pytest.raises(ConfigError, match="DEVICE=SIZE"):
        parse_max_memory("lots")
    with pytest.raises(ConfigError, match="only applies with --device-map auto"):
        TransformersBackend(resolve("gemma-3-270m"), device="cpu", max_memory="0=1GiB")


# -- KV-cache formats ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "new_tokens"), [("fp8", 5), ("int4", 5), ("int2", 5), ("int4", 131)]
)
def test_quantised_cache_bytes_match_the_arithmetic(tiny64, kind, new_tokens):
    if kind.startswith("int"):
        pytest.importorskip("optimum.quanto")
    backend = TransformersBackend(
        resolve(str(tiny64)), device="cpu", dtype="float32", kv_cache=kind
    )
    backend.load()
    sample = backend.generate(prompt_tokens=20, new_tokens=new_tokens, batch=2)
    assert sample.kv_bytes_measured == sample.kv_bytes_computed
    dynamic = backend.arch.kv_bytes(
        tokens=20 + new_tokens - 1, batch=2, bytes_per_element=4
    )
    assert sample.kv_bytes_computed < dynamic / 2


def test_kv_arithmetic_by_hand(tiny64):
    from transformers import AutoConfig

    from llmarch import arch, kvcache

    a = arch.from_config(AutoConfig.from_pretrained(str(tiny64)))
    # fp8: 2 layers x (K + V = 2 x 2 heads x 16) x 24 tokens x batch 2, 1 byte,
    # plus two float32 scales per layer.
    assert kvcache.computed_kv_bytes(
        a, "fp8", prompt_tokens=20, new_tokens=5, batch=2, bytes_per_element=4
    ) == 2 * (2 * 2 * 2 * 16 * 24 + 8)
    # int4, 20 quantised tokens and 4 residual: per layer and tensor, 1,280
    # elements -> 640 bytes packed + 20 groups x (scale + shift) x 4 bytes,
    # and 256 residual elements x 4 bytes.
    assert kvcache.computed_kv_bytes(
        a, "int4", prompt_tokens=20, new_tokens=5, batch=2, bytes_per_element=4
    ) == 2 * 2 * (640 + 20 * 2 * 4 + 256 * 4)


def test_cache_formats_the_model_or_device_cannot_use(tiny_gemma3, tiny64, monkeypatch):
    with pytest.raises(ConfigError, match="needs --device cuda"):
        TransformersBackend(resolve(str(tiny64)), device="cpu", kv_cache="offloaded")
    with pytest.raises(ConfigError, match="--kv-cache must be one of"):
        TransformersBackend(resolve(str(tiny64)), device="cpu", kv_cache="int8")
    backend = TransformersBackend(
        resolve(str(tiny_gemma3)), device="cpu", kv_cache="fp8"
    )
    with pytest.raises(ConfigError, match="sliding-window layers"):
        backend.load()
    monkeypatch.setitem(sys.modules, "optimum.quanto", None)
    with pytest.raises(ConfigError, match="optimum-quanto"):
        TransformersBackend(resolve(str(tiny64)), device="cpu", kv_cache="int4")
