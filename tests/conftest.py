"""Shared fixtures: a temporary results folder, a fake backend, tiny models."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from llmarch.backends.base import Backend, GenerationSample, LoadInfo
from llmarch.prompts import prompt_text


@pytest.fixture(autouse=True)
def results_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes its database and reports under its own tmp folder."""
    monkeypatch.setenv("LLMARCH_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("LLMARCH_DB", raising=False)
    # No test may reach a real API with the developer's keys.
    for name in ("GOOGLE_AI_STUDIO_API_KEY", "GEMINI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "results"


class FakeBackend(Backend):
    """Canned generations: TTFT ``ttft`` seconds, then one token every ``step``.

    ``fail_at`` makes the n-th generate call (1-based) raise ``fail_with``.
    """

    NAME = "fake"

    def __init__(
        self,
        *,
        ttft: float = 0.5,
        step: float = 0.1,
        kv_per_token: int = 100,
        fail_at: int | None = None,
        fail_with: BaseException | None = None,
    ) -> None:
        self.device, self.dtype = "cpu", "float32"
        self.ttft, self.step, self.kv_per_token = ttft, step, kv_per_token
        self.fail_at, self.fail_with = fail_at, fail_with
        self.calls: list[dict[str, int]] = []

    def load(self) -> LoadInfo:
        return LoadInfo(load_s=1.25, weight_bytes=4096, peak_memory_bytes=8192)

    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> GenerationSample:
        self.calls.append(
            {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "batch": batch}
        )
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise self.fail_with or RuntimeError("boom")
        t0 = 1000.0
        times = [t0 + self.ttft + i * self.step for i in range(new_tokens)]
        kv_tokens = prompt_tokens + new_tokens - 1
        kv = kv_tokens * batch * self.kv_per_token
        return GenerationSample(
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            batch=batch,
            t0=t0,
            token_times=times,
            kv_tokens=kv_tokens,
            kv_bytes_measured=kv,
            kv_bytes_computed=kv,
            peak_memory_bytes=10_000 + len(self.calls),
        )

    def describe(self) -> dict[str, Any]:
        return {"fake": True}


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


def _word_tokenizer(folder: Path) -> int:
    """A word-level tokenizer over the prompt text; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]", prompt_text())))
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.save_pretrained(folder)
    return len(vocab)


def build_tiny_model(folder: Path, kind: str) -> Path:
    """Save a tiny random model and tokenizer (``llama-gqa`` or ``gemma3-swa``)."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    vocab = _word_tokenizer(folder)
    if kind == "llama-gqa":
        # 4 query heads sharing 2 KV heads (group ratio 2), head dim 8.
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    elif kind == "gemma3-swa":
        # 5 layers, window 8 on layers 0, 1, 3, 4; full attention on layer 2.
        config = Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=5,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            sliding_window=8,
            layer_types=[
                "sliding_attention",
                "sliding_attention",
                "full_attention",
                "sliding_attention",
                "sliding_attention",
            ],
            max_position_embeddings=512,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    else:
        raise ValueError(kind)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama-gqa")


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3-swa")
