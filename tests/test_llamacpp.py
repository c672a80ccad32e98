"""The llama.cpp backend on the packaged Gemma 3 270M (Q4_K_M GGUF).

Skipped where llama-cpp-python is not installed; CI installs it (.ci/run).
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from typer.testing import CliRunner

from llmarch.backends.llamacpp_tools import INSTALL, import_llama_cpp
from llmarch.cli import app
from llmarch.errors import BackendError, ConfigError, ModelError
from llmarch.models import resolve

cli = CliRunner()
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason=f"llama-cpp-python is not installed: {INSTALL}",
)

# Gemma 3 270M: 18 layers (every 6th full, 15 with a 512-token window), one
# KV head of 256 per layer; llama.cpp's cache is f16, so one cell of one
# layer holds 256 (K) + 256 (V) elements x 2 bytes = 1,024 bytes.
GEMMA_CELL_BYTES = 1024
GEMMA_FULL_LAYERS, GEMMA_SWA_LAYERS = 3, 15


@pytest.fixture(scope="module")
def gemma():
    from llmarch.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(resolve("gemma-3-270m"), max_tokens=64)
    info = backend.load()
    yield backend, info
    backend.close()


@needs_llama
def test_timings_follow_the_definitions(gemma):
    backend, info = gemma
    sample = backend.generate(prompt_tokens=16, new_tokens=6, batch=1)
    t0, t = sample.t0, sample.token_times
    assert len(t) == 6 and len(sample.output_ids[0]) == 6
    assert t0 < t[0] and all(b >= a for a, b in zip(t, t[1:], strict=False))
    timings = sample.timings
    assert timings.ttft_s == pytest.approx(t[0] - t0)
    assert timings.tpot_s == pytest.approx((t[-1] - t[0]) / 5)
    assert timings.e2e_s == pytest.approx(t[-1] - t0)
    assert timings.prefill_tps == pytest.approx(16 / (t[0] - t0))
    assert timings.decode_tps == pytest.approx(5 / (t[-1] - t[0]))
    assert sample.kv_tokens == 16 + 6 - 1
    # the weights are the GGUF's own (Q4_K_M: far below 268M x 4 bytes)
    assert 150 * 2**20 < info.weight_bytes < 300 * 2**20
    assert sample.peak_memory_bytes >= info.weight_bytes // 2


@needs_llama
def test_prompt_is_exact_and_starts_with_one_bos(gemma):
    from llmarch.prompts import prompt_token_ids

    backend, _ = gemma
    (row,) = prompt_token_ids(backend.scoring_tokenizer(), prompt_tokens=20, batch=1)
    assert len(row) == 20 and row[0] == 2 and row.count(2) == 1


@needs_llama
def test_end_of_sequence_never_stops_a_run(gemma, monkeypatch):
    backend, _ = gemma
    eos = backend.scoring_tokenizer().eos_id
    monkeypatch.setattr(backend, "_argmax", lambda index=-1: eos)
    sample = backend.generate(prompt_tokens=8, new_tokens=5, batch=1)
    assert sample.output_ids == [[eos] * 5] and len(sample.token_times) == 5


@needs_llama
def test_kv_bytes_are_llama_cpp_allocation_worked_by_hand(gemma):
    backend, _ = gemma
    sample = backend.generate(prompt_tokens=8, new_tokens=2, batch=1)
    # n_ctx 256 (64 asked, llama.cpp pads to 256): both caches have 256 cells
    # (the windowed one would get 512 + 512 = 1,024 but never more than n_ctx).
    assert backend.n_ctx == 256
    assert [(c.cells, c.layers) for c in backend.kv] == [
        (256, GEMMA_FULL_LAYERS),
        (256, GEMMA_SWA_LAYERS),
    ]
    by_hand = 256 * 18 * GEMMA_CELL_BYTES  # 4,718,592 bytes = 4.5 MiB
    assert sample.kv_bytes_measured == by_hand == 4_718_592
    assert sample.kv_bytes_computed == by_hand


@needs_llama
def test_kv_bytes_with_a_context_beyond_the_window():
    from llmarch.backends.llamacpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(resolve("gemma-3-270m"), max_tokens=2048)
    backend.load()
    try:
        sample = backend.generate(prompt_tokens=4, new_tokens=2, batch=1)
    finally:
        backend.close()
    # Full layers: n_ctx = 2,048 cells. Windowed layers: window 512 + one
    # micro-batch of 512, padded to 256: 1,024 cells.
    assert [(c.cells, c.layers) for c in backend.kv] == [(2048, 3), (1024, 15)]
    by_hand = (2048 * 3 + 1024 * 15) * GEMMA_CELL_BYTES  # 22,020,096 = 21 MiB
    assert sample.kv_bytes_measured == sample.kv_bytes_computed == by_hand


@needs_llama
def test_a_score_does_not_depend_on_what_was_scored_before(gemma):
    from llmarch.quality.scoring import Encoded

    backend, _ = gemma
    tok = backend.scoring_tokenizer()
    ctx = [2] + tok.encode("Question: What is the capital of France?\nAnswer:")
    choices = [tok.encode(" Paris"), tok.encode(" a large blue whale")]
    together = backend.score_tokens([Encoded(ctx, c) for c in choices], 1)
    backward = backend.score_tokens([Encoded(ctx, c) for c in choices[::-1]], 1)
    assert [s.logprob for s in together] == [s.logprob for s in backward[::-1]]
    assert together[0].logprob > together[1].logprob
    assert [s.tokens for s in together] == [1, 4]


@needs_llama
def test_scores_equal_llama_cpp_pythons_own_log_probabilities(gemma):
    """The whole text in one call, as llama-cpp-python's ``eval`` (and its
    server, for a fresh prompt) does it: the same figures to float32 noise."""
    import llama_cpp
    import numpy as np

    backend, _ = gemma
    context, continuation = (
        "Question: What is the capital of France?\nAnswer:",
        " Paris",
    )
    (score,) = backend.loglikelihood([(context, continuation)], batch_size=1)
    plain = llama_cpp.Llama(
        model_path=str(backend.gguf_path()), n_ctx=256, logits_all=True, verbose=False
    )
    try:
        ids = plain.tokenize((context + continuation).encode(), add_bos=True)
        plain.eval(ids)
        logits = plain.scores[: len(ids)].astype(np.float64)
    finally:
        plain.close()
    top = logits.max(axis=1, keepdims=True)
    logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    n = score.tokens
    expected = sum(logprobs[i - 1, ids[i]] for i in range(len(ids) - n, len(ids)))
    assert n == 1 and score.logprob == pytest.approx(expected, abs=1e-4)


@needs_llama
def test_batch_above_one_is_one_clear_error():
    result = cli.invoke(
        app,
        ["bench", "gemma-3-270m", "--backend", "llamacpp", "--batch", "1,2"],
    )
    assert result.exit_code == 1
    assert "batch 1 only" in result.output and "Traceback" not in result.output


def test_a_folder_is_not_a_gguf(tiny_llama):
    from llmarch.backends.llamacpp_backend import LlamaCppBackend

    with pytest.raises(ModelError, match="not a GGUF"):
        LlamaCppBackend(resolve(str(tiny_llama)))


@needs_llama
def test_a_text_file_named_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model")
    result = cli.invoke(
        app, ["bench", str(fake), "--backend", "llamacpp", "--new-tokens", "2"]
    )
    assert result.exit_code == 1
    assert "not a GGUF file" in result.output and "Traceback" not in result.output


def test_missing_llama_cpp_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails
    with pytest.raises(BackendError) as err:
        import_llama_cpp()
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in str(err.value)
    assert "pip install 'llama-cpp-python[server]'" in str(err.value)


def test_dtype_and_device_are_refused_with_the_fix():
    from llmarch.backends.llamacpp_backend import LlamaCppBackend

    ref = resolve("gemma-3-270m")
    with pytest.raises(ConfigError, match="own quantisation"):
        LlamaCppBackend(ref, dtype="bfloat16")
    with pytest.raises(ConfigError, match="--device cpu"):
        LlamaCppBackend(ref, device="cuda")


@needs_llama
def test_bench_through_the_cli_stores_matching_kv(tmp_path):
    result = cli.invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--backend",
            "llamacpp",
            "--prompt-tokens",
            "16",
            "--new-tokens",
            "4",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--db",
            str(tmp_path / "r.sqlite"),
            "--out-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["backend"] == "llamacpp" and doc["run"]["dtype"] == "Q4_K_M"
    (row,) = doc["summary"]
    assert row["kv_match"] and row["kv_bytes_measured"] == 256 * 18 * 1024
    assert "llama.cpp" in doc["run"]["model_source"]


@needs_llama
@pytest.mark.slow
def test_log_likelihoods_agree_with_transformers_on_the_same_gguf(gemma):
    """Same GGUF, two engines: llama.cpp multiplies the Q4_K_M blocks with
    8-bit-quantised activations and keeps an f16 KV cache; transformers runs
    the same weights de-quantised to float32. Measured on 25 ARC-Easy items
    (101 choices): identical token counts, |difference| median 0.17 nats and
    at most 0.99 nats per choice (0.51 per token), the same best choice on 24
    of 25 items. The bounds below leave that measured spread some room."""
    from llmarch.backends.transformers_backend import TransformersBackend
    from llmarch.quality.tasks import load_task

    llama, _ = gemma
    docs = load_task("arc-easy").select(6, seed=1234)
    pairs = [
        (c, x)
        for d in docs
        for c, x in zip(d["contexts"], d["continuations"], strict=True)
    ]
    ours = llama.loglikelihood(pairs, batch_size=1)
    hf = TransformersBackend(resolve("gemma-3-270m"), device="cpu")
    hf.load()
    try:
        theirs = hf.loglikelihood(pairs, batch_size=8)
    finally:
        hf.close()

    assert [a.tokens for a in ours] == [b.tokens for b in theirs]
    diffs = sorted(
        abs(a.logprob - b.logprob) for a, b in zip(ours, theirs, strict=True)
    )
    assert diffs[len(diffs) // 2] < 0.35 and diffs[-1] < 1.5
    best_agree, at = 0, 0
    for d in docs:
        k = len(d["continuations"])
        mine = max(range(k), key=lambda i: ours[at + i].logprob)
        ref = max(range(k), key=lambda i: theirs[at + i].logprob)
        best_agree += mine == ref
        at += k
    assert best_agree >= len(docs) - 1
