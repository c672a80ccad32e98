"""The transformers backend on tiny random models built in the test."""

import json

import pytest
import torch

from llmarch.backends.transformers_backend import (
    TransformersBackend,
    resolve_device,
    resolve_dtype,
)
from llmarch.errors import BackendError, ConfigError, ResourceError
from llmarch.models import resolve
from llmarch.prompts import prompt_token_ids


def test_exact_token_counts_and_one_timestamp_per_step(tiny_llama):
    backend = TransformersBackend(
        resolve(str(tiny_llama)), device="cpu", dtype="float32"
    )
    info = backend.load()
    sample = backend.generate(prompt_tokens=12, new_tokens=6, batch=2)
    assert len(sample.token_times) == 6
    assert all(
        b >= a for a, b in zip(sample.token_times, sample.token_times[1:], strict=False)
    )
    assert sample.token_times[0] > sample.t0
    assert len(sample.output_ids) == 2 and all(len(r) == 6 for r in sample.output_ids)
    t = sample.timings
    assert t.ttft_s == pytest.approx(sample.token_times[0] - sample.t0)
    assert t.decode_tps == pytest.approx(
        2 * 5 / (sample.token_times[-1] - sample.token_times[0])
    )
    # weights: every parameter once (embeddings untied here)
    params = sum(p.numel() for p in backend.model.parameters())
    assert info.weight_bytes >= params * 4


def test_end_of_sequence_never_stops_a_run(tiny_llama, tmp_path):
    import shutil

    backend = TransformersBackend(
        resolve(str(tiny_llama)), device="cpu", dtype="float32"
    )
    backend.load()
    first = backend.generate(prompt_tokens=10, new_tokens=3, batch=1).output_ids[0]

    # Make the token greedy decoding picks first the model's EOS: a plain
    # generate() would stop after one token.
    folder = tmp_path / "eos-model"
    shutil.copytree(tiny_llama, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = first[0]
    (folder / "generation_config.json").write_text(json.dumps(gen))

    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = torch.tensor(
        [prompt_token_ids(backend.tokenizer, prompt_tokens=10, batch=1)[0]]
    )
    stopped = plain.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=8,
        do_sample=False,
    )
    assert stopped.shape[1] == 10 + 1  # the premise: plain generate stops at EOS

    eos_backend = TransformersBackend(
        resolve(str(folder)), device="cpu", dtype="float32"
    )
    eos_backend.load()
    assert eos_backend.eos_token_id == first[0]
    sample = eos_backend.generate(prompt_tokens=10, new_tokens=8, batch=1)
    assert len(sample.output_ids[0]) == 8
    assert sample.output_ids[0][:3] == first


def test_bfloat16_weights_and_cache(tiny_gemma3):
    backend = TransformersBackend(
        resolve(str(tiny_gemma3)), device="cpu", dtype="bfloat16"
    )
    backend.load()
    assert backend.model.dtype == torch.bfloat16
    sample = backend.generate(prompt_tokens=5, new_tokens=2, batch=1)
    # 5 layers all below the window: 6 tokens * 2 * 16 * 2 bytes * 5 layers
    assert sample.kv_bytes_measured == sample.kv_bytes_computed == 6 * 2 * 16 * 2 * 5


def test_prompts_have_exact_length_and_distinct_rows(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    rows = prompt_token_ids(tok, prompt_tokens=50, batch=3)
    assert [len(r) for r in rows] == [50, 50, 50]
    # this tokenizer adds no BOS, so all 50 ids are text (the real Gemma
    # tokenizer adds one; the end-to-end test checks that case)
    assert tok("x")["input_ids"][0] != tok.bos_token_id
    assert len({tuple(r) for r in rows}) == 3
    # longer than the whole text: wraps around, still exact
    long = prompt_token_ids(tok, prompt_tokens=5000, batch=1)[0]
    assert len(long) == 5000
    # real text, not random ids: it decodes back to words of the shipped text
    assert (
        "lighthouse" in tok.decode(rows[0]).lower()
        or "keeper" in tok.decode(rows[0]).lower()
    )


def test_device_and_dtype_resolution():
    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("float16", "cpu") == "float16"
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match="--dtype"):
        resolve_dtype("int3", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="--device cpu"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu"


def test_too_big_for_memory_stops_before_loading(tiny_llama, monkeypatch):
    from llmarch import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    backend = TransformersBackend(
        resolve(str(tiny_llama)), device="cpu", dtype="float32"
    )
    with pytest.raises(ResourceError, match="--force"):
        backend.load()
    assert backend.model is None
    forced = TransformersBackend(
        resolve(str(tiny_llama)), device="cpu", dtype="float32", force=True
    )
    forced.load()
    assert forced.model is not None


def test_context_longer_than_the_model_is_refused(tiny_llama):
    # the tiny Llama has max_position_embeddings = 512
    backend = TransformersBackend(
        resolve(str(tiny_llama)), device="cpu", dtype="float32", max_tokens=513
    )
    with pytest.raises(ConfigError, match="exceeds the context length"):
        backend.load()


def test_fit_check_counts_the_kv_cache(tiny_llama, monkeypatch):
    from transformers import AutoConfig

    from llmarch import memory
    from llmarch.backends import transformers_backend as tb

    config = AutoConfig.from_pretrained(str(tiny_llama))
    small = TransformersBackend(
        resolve(str(tiny_llama)),
        device="cpu",
        dtype="float32",
        max_tokens=10,
        max_batch=1,
    )
    big = TransformersBackend(
        resolve(str(tiny_llama)),
        device="cpu",
        dtype="float32",
        max_tokens=500,
        max_batch=64,
    )
    # KV for 500 tokens x 64 rows: 3 layers * 2 * 2 heads * 8 * 4 bytes * 500 * 64
    kv = 3 * 2 * 2 * 8 * 4 * 500 * 64
    # activations: 64 * 500 * (64 + 4 * 32) * 4 bytes
    act = 64 * 500 * (64 + 4 * 32) * 4
    assert big.estimate_bytes(config) - small.estimate_bytes(config) == (
        kv - 3 * 2 * 2 * 8 * 4 * 10 + act - 10 * (64 + 4 * 32) * 4
    )
    free = small.estimate_bytes(config) + 1
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)
    small.load()
    with pytest.raises(ResourceError, match="KV cache for 500 tokens x batch 64"):
        big.load()
    assert tb.WORKING_MEMORY_BYTES > 0


def test_a_text_file_named_gguf_is_refused(tmp_path, monkeypatch):
    from llmarch.errors import ModelError

    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "notes.gguf"
    fake.write_text("not a model\n" * 10)
    backend = TransformersBackend(resolve(str(fake)), device="cpu", dtype="float32")
    with pytest.raises(ModelError, match="not a readable GGUF"):
        backend.load()


def test_folder_without_tokenizer_is_one_error(tiny_llama, tmp_path):
    import shutil

    from llmarch.errors import ModelError

    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_llama / name, folder / name)
    backend = TransformersBackend(resolve(str(folder)), device="cpu", dtype="float32")
    with pytest.raises(ModelError, match="tokenizer"):
        backend.load()
