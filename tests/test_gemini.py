"""The Gemini backend against a local server speaking its streaming wire format."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmarch.backends.gemini_backend import GeminiBackend
from llmarch.cli import app
from llmarch.errors import BackendError
from tests.fault_server import GeminiServer

cli = CliRunner()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.delenv("GOOGLE_AI_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-key-never-stored")


def test_stream_metrics_from_the_wire_format(key):
    with GeminiServer(words=4) as server:
        backend = GeminiBackend(model="gemma-4-12b-it", base_url=server.base_url)
        [sample] = backend.generate(prompt_tokens=8, new_tokens=3, batch=1)
    assert ":streamGenerateContent" in server.paths[0]
    assert "gemma-4-12b-it" in server.paths[0]
    assert sample.error is None and sample.text == " w0 w1 w2"
    # cumulative usage (1, 2, 3) counted once
    assert (sample.output_tokens, sample.tokens_source) == (3, "usage")
    t = sample.timings
    assert len(sample.token_times) == 3
    assert t.ttft_s == pytest.approx(sample.token_times[0] - sample.t0)
    assert t.tpot_s == pytest.approx(
        (sample.token_times[2] - sample.token_times[0]) / 2
    )


def test_retry_then_success_and_counted_failure(key):
    import llmarch.backends.api_common as ob

    saved, ob.BACKOFF_S = ob.BACKOFF_S, 0.01
    try:
        with GeminiServer(["429"]) as server:
            backend = GeminiBackend(model="m", base_url=server.base_url)
            [ok] = backend.generate(prompt_tokens=8, new_tokens=2, batch=1)
        assert ok.error is None and server.requests == 2
        with GeminiServer(["500"] * 5) as server:
            backend = GeminiBackend(model="m", base_url=server.base_url, max_retries=1)
            [bad] = backend.generate(prompt_tokens=8, new_tokens=2, batch=1)
        assert bad.error.startswith("HTTP 500") and bad.timings is None
        assert bad.error.endswith("after 2 attempts")
    finally:
        ob.BACKOFF_S = saved


def test_missing_key_is_one_line(monkeypatch):
    for name in ("GOOGLE_AI_STUDIO_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        BackendError, match="GOOGLE_AI_STUDIO_API_KEY or GEMINI_API_KEY"
    ):
        GeminiBackend(model="m")


def test_bench_picks_the_api_for_a_catalog_model_without_weights(key, tmp_path):
    with GeminiServer() as server:
        # --backend auto: no local weights for gemma-4-12b, a key is set
        result = cli.invoke(
            app,
            [
                "bench",
                "gemma-4-12b",
                "--backend",
                "gemini",
                "--base-url",
                server.base_url,
                "--prompt-tokens",
                "8",
                "--new-tokens",
                "2",
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--db",
                str(tmp_path / "g.sqlite"),
                "--out-dir",
                str(tmp_path),
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["backend"] == "gemini"
    assert "gemma-4-12b-it" in server.paths[0]  # the catalog's API id
    assert "gm-test-key-never-stored" not in (tmp_path / "g.sqlite").read_text(
        errors="ignore"
    )


def test_auto_without_weights_or_key_names_both(monkeypatch, tmp_path):
    for name in ("GOOGLE_AI_STUDIO_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = cli.invoke(app, ["bench", "gemma-4-12b", "--db", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "download google/gemma-4-12B" in result.output
    assert "GEMINI_API_KEY" in result.output and "gemma-4-12b-it" in result.output


def _auto_request():
    from llmarch.runner import BenchRequest

    return BenchRequest(
        model="gemma-4-12b",
        prompt_tokens="8",
        new_tokens="2",
        batch="1",
        repeat=1,
        warmup=0,
        device="cpu",
        dtype="float32",
        force=False,
        db=None,
        out_dir=None,
        backend="auto",
    )


def test_auto_with_a_key_uses_gemini(key, monkeypatch):
    from llmarch.runner import choose_backend

    request = _auto_request()
    assert choose_backend(request) == "gemini"
    request.model = "gemma-3-270m"
    assert choose_backend(request) == "transformers"
    request.base_url = "http://127.0.0.1:1/v1"
    assert choose_backend(request) == "openai"


def test_auto_prefers_the_api_when_local_weights_do_not_fit(
    key, monkeypatch, tiny_llama
):
    from llmarch import catalog, memory
    from llmarch.runner import choose_backend

    # a catalog model whose weights are "present" locally (a folder in the
    # Hugging Face cache) and that has an API id
    entry = catalog.load_catalog()["gemma-4-12b"]
    monkeypatch.setattr("llmarch.models.hub_cache_folder", lambda repo: tiny_llama)
    request = _auto_request()
    assert entry.api_ids["gemini"] == "gemma-4-12b-it"
    assert choose_backend(request) == "transformers"  # present and fits
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1)
    assert choose_backend(request) == "gemini"  # present but does not fit
