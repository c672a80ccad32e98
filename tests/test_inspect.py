"""`llmarch inspect`: readers, figures and messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from llmarch.catalog import unknown_model_message
from llmarch.cli import app
from llmarch.errors import ConfigError, ModelError
from llmarch.gguf_meta import read_header
from llmarch.inspect import read_model, report
from llmarch.models import assemble_embedded, resolve

cli = CliRunner()


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory):
    import os

    os.environ.setdefault("LLMARCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return assemble_embedded(resolve("gemma-3-270m"))


def test_gguf_reader_agrees_with_the_tensors_of_the_real_model(gemma_gguf):
    model = read_model(str(gemma_gguf))
    r = report(
        model, context=1000, batch=1, weights_dtype="bfloat16", kv_dtype="bfloat16"
    )
    # the parameters computed from the metadata equal the elements of the
    # tensors actually stored in the file
    assert r["params_total"] == read_header(gemma_gguf).n_elements() == 268_098_176
    assert r["attention"] == "MQA"
    assert r["layout"] == "15 sliding (window 512), 3 full"
    # bf16: 18 layers * 2 * 256 * 2 bytes
    assert r["kv_bytes_per_token"] == 18_432
    # 1000 tokens: 3 full layers * 1000 + 15 sliding * 511, 1,024 bytes each
    assert r["kv_bytes"] == (3 * 1000 + 15 * 511) * 1024
    assert r["kv_bytes_mha"] == 1000 * 18 * 4 * 2 * 256 * 2
    assert r["weight_bytes"] == {
        "float32": 1_072_392_704,
        "bfloat16": 536_196_352,
        "int8": 268_098_176,
        "4bit": 134_049_088,
    }
    assert any("layer_types" in u for u in model.unknown)


def test_folder_reader(tiny_llama):
    r = report(
        read_model(str(tiny_llama)),
        context=10,
        batch=2,
        weights_dtype="float32",
        kv_dtype="float32",
    )
    assert r["attention"] == "GQA 2:1"
    # 3 layers * 2 * 2 KV heads * 8 * 4 bytes * 10 tokens * batch 2
    assert r["kv_bytes"] == 3 * 2 * 2 * 8 * 4 * 10 * 2
    assert r["memory_needed_bytes"] == r["weight_bytes"]["float32"] + r["kv_bytes"]
    assert r["fits"]["8 GB"] is True


def test_budgets_by_hand(tiny_llama):
    model = read_model(str(tiny_llama))
    r = report(
        model,
        context=100,
        batch=1,
        weights_dtype="4bit",
        kv_dtype="int8",
        free_memory={"tiny budget": 1},
    )
    assert r["fits"]["tiny budget"] is False
    assert r["weight_bytes"]["4bit"] == r["params_total"] // 2


def test_tiny_gguf_written_here(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "tiny-llama.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(16)
    w.add_feed_forward_length(24)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_token_list([f"t{i}" for i in range(50)])
    w.add_tensor("token_embd.weight", np.zeros((50, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = report(
        read_model(str(path)),
        context=5,
        batch=1,
        weights_dtype="float32",
        kv_dtype="float32",
    )
    assert r["attention"] == "MQA" and r["vocab_size"] == 50 and r["layers"] == 2
    assert r["tied_embeddings"] is True  # no output.weight tensor
    # 2 layers * 2 * 1 KV head * (16 / 4) * 4 bytes
    assert r["kv_bytes_per_token"] == 64


def test_unknown_ids():
    assert "Did you mean: gemma-3-270m" in unknown_model_message("gemma-3-27m")
    with pytest.raises(ModelError):
        read_model("no-such-model")


def test_bad_options(tiny_llama):
    model = read_model(str(tiny_llama))
    with pytest.raises(ConfigError, match="--weights-dtype"):
        report(model, context=1, batch=1, weights_dtype="int3", kv_dtype="float32")
    with pytest.raises(ConfigError, match="--kv-dtype"):
        report(model, context=1, batch=1, weights_dtype="int8", kv_dtype="fp7")
    with pytest.raises(ConfigError, match="--context"):
        report(model, context=0, batch=1, weights_dtype="int8", kv_dtype="float32")


def test_cli_side_by_side(tiny_llama, tiny_gemma3):
    result = cli.invoke(
        app, ["inspect", str(tiny_llama), str(tiny_gemma3), "--context", "20"]
    )
    assert result.exit_code == 0, result.output
    assert "GQA 2:1" in result.stdout and "MQA" in result.stdout
    result = cli.invoke(app, ["inspect", str(tiny_llama), str(tiny_gemma3), "--json"])
    llama, gemma = json.loads(result.stdout)
    assert llama["context"] == 8192 and llama["kv_dtype"] == "bfloat16"
    assert gemma["layout"] == "4 sliding (window 8), 1 full"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "no-such-model"], "Unknown model"),
        (["inspect", "missing.gguf"], "GGUF file not found"),
        (["inspect", "gemma-3-270m", "--kv-dtype", "fp7"], "--kv-dtype"),
        (["inspect", "gemma-3-270m", "--batch", "0"], "--batch"),
    ],
)
def test_cli_bad_input(args, message):
    result = cli.invoke(app, args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_cli_folder_without_config(tmp_path):
    result = cli.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "config.json" in result.output


def test_gemma_4_sizes_that_do_not_exist():
    for wrong in ("gemma-4-27b", "gemma-4-1b"):
        result = cli.invoke(app, ["inspect", wrong])
        assert result.exit_code == 1
        assert (
            "gemma-4-e2b, gemma-4-e4b, gemma-4-12b, gemma-4-26b-a4b, gemma-4-31b"
            in (result.output)
        )


def test_unsupported_family_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    result = cli.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1
    assert "no architecture arithmetic for model_type 'bert'" in result.output


def test_catalog_models_side_by_side_json():
    result = cli.invoke(
        app, ["inspect", "gemma-4-31b", "deepseek-v3", "--context", "32768", "--json"]
    )
    assert result.exit_code == 0, result.output
    gemma, deepseek = json.loads(result.stdout)
    assert gemma["attention"] == "GQA 2:1 + GQA 8:1"
    # 50 sliding layers: 16 KV heads x 2 x 256; 10 full: 4 x 2 x 512 (bf16)
    assert gemma["kv_bytes_per_token"] == (50 * 16 * 512 + 10 * 4 * 1024) * 2
    # sliding layers stop at 1023 tokens
    assert gemma["kv_bytes"] == (50 * 16 * 512 * 1023 + 10 * 4 * 1024 * 32768) * 2
    assert deepseek["attention"] == "MLA"
    # 61 layers x (512 latent + 64 rotary) x 2 bytes
    assert deepseek["kv_bytes_per_token"] == 61 * 576 * 2 == 70_272
    assert deepseek["api_ids"] == {}
    assert gemma["api_ids"]["gemini"] == "gemma-4-31b-it"


def test_broken_configs_are_one_line(tmp_path):
    cases = {
        "zero-heads": {"model_type": "llama", "num_attention_heads": 0},
        "zero-kv": {"model_type": "llama", "num_key_value_heads": 0},
        "not-json": None,
    }
    for name, config in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        text = "{not json" if config is None else json.dumps(config)
        (folder / "config.json").write_text(text)
        result = cli.invoke(app, ["inspect", str(folder)])
        assert result.exit_code == 1, (name, result.output)
        assert "Traceback" not in result.output and result.output.startswith("error:")


def test_corrupt_gguf_lengths(gemma_gguf, tmp_path):
    import struct

    head = bytearray(gemma_gguf.read_bytes()[:4096])
    for offset, value in ((24, 2**62), (16, 2**40)):
        bad = bytearray(head)
        bad[offset : offset + 8] = struct.pack("<Q", value)
        path = tmp_path / f"bad{offset}.gguf"
        path.write_bytes(bad)
        with pytest.raises(ModelError, match="runs past the end"):
            read_model(str(path))
    version = bytearray(head)
    version[4:8] = struct.pack("<I", 99)
    (tmp_path / "v99.gguf").write_bytes(version)
    with pytest.raises(ModelError, match="version 99"):
        read_model(str(tmp_path / "v99.gguf"))


def test_bare_config_says_what_it_lacks(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    model = read_model(str(tmp_path))
    assert any(u.startswith("hidden_size") for u in model.unknown)
    assert any(u.startswith("vocab_size") for u in model.unknown)


def test_context_longer_than_the_model_is_noted_and_layout_paired():
    r = report(
        read_model("gpt2"),
        context=4096,
        batch=1,
        weights_dtype="float32",
        kv_dtype="float32",
    )
    assert any("longer than the model's context length (1,024" in n for n in r["notes"])
    r = report(
        read_model("gemma-4-31b"),
        context=10,
        batch=1,
        weights_dtype="bfloat16",
        kv_dtype="bfloat16",
    )
    assert {
        (k["attention"], k["layers"], k["kv_heads"], k["head_dim"])
        for k in r["kv_layout"]
    } == {("sliding", 50, 16, 256), ("full", 10, 4, 512)}


def test_hub_repo_and_case_map_to_the_catalog():
    assert read_model("google/gemma-3-270m").name == "gemma-3-270m"
    assert read_model("Gemma-3-270M").name == "gemma-3-270m"
    with pytest.raises(ModelError, match="empty"):
        read_model(" ")
