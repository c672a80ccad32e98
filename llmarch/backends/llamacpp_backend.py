"""The llama.cpp backend: a GGUF run in-process by llama-cpp-python, in its own
quantisation (Q4_K_M stays Q4_K_M), on CPU.

Timing follows the transformers backend's definitions. The prompt is one
``llama_decode`` call; each new token is one more call with one token. The
clock is read once before the prompt (``t0``) and once per step, after the
step's token id has been picked on the host (greedy: the argmax of the
logits llama.cpp returns). llama.cpp on CPU returns from ``llama_decode``
once the logits exist, so a reading marks a token that really exists.
End-of-sequence never stops a timed run: the argmax is kept whatever it is.

Batch: llama-cpp-python's ``Llama`` holds one sequence per context, so this
backend measures batch 1 only and refuses larger batches with one line (the
llama.cpp server, through ``--backend openai``, takes concurrent requests).

KV cache: llama.cpp allocates the cache once for its context of ``n_ctx``
cells; windowed layers (Gemma 3) get a smaller cache of their own. The
measured figure is that allocation, read from llama.cpp's log; the computed
one is the architecture arithmetic (``llmarch.arch``, from the GGUF's
metadata) for the same cell counts at the cache type's bytes per element.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from llmarch import arch, memory
from llmarch.backends.base import Backend, GenerationSample, LoadInfo
from llmarch.backends.llamacpp_tools import (
    TYPE_BYTES,
    KVAllocation,
    LlamaTokenizer,
    captured_log,
    check_gguf,
    fill_batch,
    import_llama_cpp,
    logits_row,
    parse_kv_lines,
)
from llmarch.errors import BackendError, ConfigError, ModelError
from llmarch.models import ModelRef, assemble_embedded
from llmarch.prompts import prompt_token_ids
from llmarch.quality.local import DEFAULT_MAX_LENGTH, TokenScorer
from llmarch.quality.scoring import Encoded, TokenScore, cut_at_stop

log = logging.getLogger(__name__)

# Tokens per llama_decode call (llama.cpp splits them in micro-batches of 512).
N_BATCH = 512


def cpu_threads() -> int:
    """The cores this process may run on (torch uses as many by default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LlamaCppBackend(TokenScorer, Backend):
    """Runs a GGUF file through llama.cpp (llama-cpp-python), batch 1, on CPU."""

    NAME: ClassVar[str] = "llamacpp"
    QUALITY: ClassVar[frozenset[str]] = frozenset({"loglikelihood", "generate"})

    def __init__(
        self,
        ref: ModelRef,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_tokens: int = 0,
        max_batch: int = 1,
        quality_tokens: int = 0,
        threads: int | None = None,
    ) -> None:
        if device not in ("auto", "cpu"):
            raise ConfigError(
                f"the llamacpp backend runs on the CPU; pass --device cpu or auto, "
                f"not '{device}'"
            )
        if dtype != "auto":
            raise ConfigError(
                "the llamacpp backend runs the GGUF in its own quantisation; "
                f"drop --dtype {dtype} (or pass auto)"
            )
        if max_batch > 1:
            raise ConfigError(
                f"the llamacpp backend measures batch 1 only (llama-cpp-python runs "
                f"one sequence per context), not --batch up to {max_batch}; pass "
                "--batch 1, or serve the GGUF with `python -m llama_cpp.server` "
                "and use --backend openai for concurrent requests"
            )
        if ref.kind == "folder":
            raise ModelError(
                f"{ref.name} is a transformers folder, not a GGUF; the llamacpp "
                "backend runs .gguf files (or catalog models shipped as GGUF)."
            )
        self.ref = ref
        ref.source = ref.source.replace(
            "de-quantised by transformers", "run in its quantisation by llama.cpp"
        )
        self.device = "cpu"
        quant = ref.catalog.weights.quantization if ref.catalog else None
        self.dtype = str(quant or "gguf")
        self.max_tokens = max_tokens
        self.quality_tokens = quality_tokens
        self.threads = threads or cpu_threads()
        self.llm: Any = None
        self.lib: Any = None
        self.arch: arch.Architecture | None = None
        self.kv: list[KVAllocation] = []
        self.n_ctx = 0
        self.n_vocab = 0
        self._batch: Any = None
        self._tok: LlamaTokenizer | None = None
        self._last_setting: tuple[int, int] | None = None

    # -- loading -----------------------------------------------------------

    def gguf_path(self) -> Any:
        if self.ref.gguf_path is None:  # the embedded model: assemble its chunks
            self.ref.gguf_path = assemble_embedded(self.ref)
        return self.ref.gguf_path

    def load(self) -> LoadInfo:
        self.lib = llama_cpp = import_llama_cpp()
        path = self.gguf_path()
        check_gguf(path)
        self.arch = _gguf_arch(path)
        if self.arch is not None and self.arch.context_length:
            if self.max_tokens > self.arch.context_length:
                raise ConfigError(
                    f"prompt plus new tokens ({self.max_tokens}) exceeds the context "
                    f"length of {self.ref.name} ({self.arch.context_length} tokens); "
                    "lower --prompt-tokens or --new-tokens."
                )
        # Scoring windows are cut to the model's context; timed runs are not.
        scoring = self.quality_tokens
        if self.arch is not None and self.arch.context_length:
            scoring = min(scoring, self.arch.context_length)
        n_ctx = max(self.max_tokens, scoring, 64)

        with memory.PeakMemory("cpu") as peak, captured_log(llama_cpp) as lines:
            t = time.perf_counter()
            try:
                self.llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    # llama-cpp-python keeps an n_batch x vocab array of its
                    # own (untouched here); longer prompts go in several calls
                    n_batch=min(n_ctx, N_BATCH),
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    n_gpu_layers=0,
                    logits_all=False,
                    # Windowed layers keep the window plus a micro-batch, as
                    # llama.cpp's own CLI and server do; llama-cpp-python's
                    # default (True) gives them all n_ctx cells.
                    swa_full=False,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                said = [x.strip() for x in lines if "error" in x.lower()]
                reason = said[-1] if said else str(exc)
                raise ModelError(
                    f"llama.cpp cannot load {path.name}: {reason}. Pass a GGUF of "
                    "an architecture llama.cpp supports."
                ) from exc
            load_s = time.perf_counter() - t

        self.kv = parse_kv_lines("".join(lines))
        if not self.kv:
            log.warning("llama.cpp's log did not say how big its KV cache is")
        ctx = self.llm._ctx.ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_vocab = int(self.llm.n_vocab())
        self.n_batch = int(llama_cpp.llama_n_batch(ctx))
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._tok = LlamaTokenizer(self.llm)
        if self.ref.catalog is None:
            self.dtype = _file_type(self.llm) or self.dtype
        return LoadInfo(
            load_s=load_s,
            weight_bytes=int(llama_cpp.llama_model_size(self.llm._model.model)),
            peak_memory_bytes=peak.bytes,
            details={
                "gguf": str(path),
                "n_ctx": self.n_ctx,
                "threads": self.threads,
                "kv_caches": [k.__dict__ for k in self.kv],
                "llama_cpp_python": getattr(llama_cpp, "__version__", None),
            },
        )

    def describe(self) -> dict[str, Any]:
        if self.llm is None:
            return {}
        meta = self.llm.metadata
        return {
            "model_type": meta.get("general.architecture"),
            "description": self.llm._model.desc(),
            "parameters": int(self.lib.llama_model_n_params(self.llm._model.model)),
            "quantization": self.dtype,
            "attention": self.arch.attention_kind() if self.arch else None,
            "layers": int(self.lib.llama_model_n_layer(self.llm._model.model)),
            "sliding_window": int(self.lib.llama_model_n_swa(self.llm._model.model))
            or None,
            "context_length": self.arch.context_length if self.arch else None,
            "n_ctx": self.n_ctx,
            "threads": self.threads,
        }

    # -- the KV cache --------------------------------------------------------

    @property
    def kv_bytes_per_element(self) -> float:
        """Bytes per K element of llama.cpp's cache (f16 unless changed)."""
        size = TYPE_BYTES[self.kv[0].type_k] if self.kv else 2.0
        return int(size) if size.is_integer() else size

    def kv_bytes_measured(self) -> int | None:
        """What llama.cpp allocated, from the cell and layer counts it logged."""
        if not self.kv or self.arch is None:
            return self._kv_from_mib()
        k = self.arch.layers[0].kv_heads * self.arch.layers[0].head_dim
        v = self.arch.layers[0].kv_heads * self.arch.layers[0].v_head_dim
        if any(
            (x.kv_heads * x.head_dim, x.kv_heads * x.v_head_dim) != (k, v)
            for x in self.arch.layers
        ):
            return self._kv_from_mib()  # per-layer head sizes: trust the MiB
        total = sum(c.bytes(k, v) for c in self.kv)
        # The sizes llama.cpp printed (0.01 MiB) must agree with the counts.
        printed = sum(c.mib for c in self.kv) * 2**20
        if abs(total - printed) > 0.006 * 2**20 * len(self.kv):
            log.warning("KV cells x layers (%d B) disagree with the log", total)
        return total

    def _kv_from_mib(self) -> int | None:
        return int(sum(c.mib for c in self.kv) * 2**20) if self.kv else None

    def kv_bytes_computed(self) -> int | None:
        """The architecture arithmetic for llama.cpp's cell counts.

        Full-attention layers hold ``n_ctx`` cells; windowed layers hold the
        cells of the smaller cache llama.cpp made for them (the window plus a
        micro-batch, padded), so the arithmetic is checked on every layer.
        """
        if self.arch is None or not self.kv:
            return None
        full = max(self.kv, key=lambda c: c.cells)
        window = min(self.kv, key=lambda c: c.cells)
        total = 0.0
        for layer in self.arch.layers:
            cells = full.cells if layer.window is None else window.cells
            total += (
                cells
                * layer.kv_heads
                * (
                    layer.head_dim * TYPE_BYTES[full.type_k]
                    + layer.v_head_dim * TYPE_BYTES[full.type_v]
                )
            )
        return int(round(total))

    # -- generation --------------------------------------------------------

    def _decode(
        self, tokens: list[int], first_pos: int, logits_from: int, *, rows: bool = False
    ) -> list[Any]:
        """Decode ``tokens`` in calls of at most ``n_batch``; logits are
        computed for the tokens at index >= ``logits_from`` (the last one at
        least). With ``rows``, copies of those logits rows come back."""
        kept: list[Any] = []
        ctx = self.llm._ctx.ctx
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            last = start + len(chunk) == len(tokens)
            wanted = max(logits_from - start, 0) if rows or last else len(chunk)
            if last:
                wanted = min(wanted, len(chunk) - 1)
            fill_batch(self._batch, chunk, first_pos + start, wanted)
            code = self.lib.llama_decode(ctx, self._batch)
            if code != 0:
                raise BackendError(f"llama_decode returned {code}")
            if rows:
                for j in range(wanted, len(chunk)):  # batch index, not output
                    row = logits_row(self.lib, ctx, j, self.n_vocab)
                    kept.append(row.copy())
        return kept

    def _clear(self) -> None:
        self.llm._ctx.kv_cache_clear()

    def _argmax(self, index: int = -1) -> int:
        row = logits_row(self.lib, self.llm._ctx.ctx, index, self.n_vocab)
        return int(row.argmax())

    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> GenerationSample:
        if self.llm is None:
            raise BackendError("load() must run before generate()")
        if batch != 1:
            raise ConfigError(
                "the llamacpp backend measures batch 1 only; pass --batch 1"
            )
        if prompt_tokens + new_tokens - 1 > self.n_ctx:
            raise ConfigError(
                f"prompt plus new tokens exceed the llama.cpp context ({self.n_ctx})"
            )
        prompt = prompt_token_ids(self._tok, prompt_tokens=prompt_tokens, batch=1)[0]
        self._clear()
        setting = (prompt_tokens, new_tokens)
        release = setting != self._last_setting
        self._last_setting = setting
        out: list[int] = []
        times: list[float] = []

        with memory.PeakMemory("cpu", release_heap=release) as peak:
            if len(prompt) <= self.n_batch:  # fill the batch before the clock
                fill_batch(self._batch, prompt, 0, len(prompt) - 1)
                t0 = time.perf_counter()
                code = self.lib.llama_decode(self.llm._ctx.ctx, self._batch)
                if code != 0:
                    raise BackendError(f"llama_decode returned {code}")
            else:
                t0 = time.perf_counter()
                self._decode(prompt, 0, len(prompt) - 1)
            out.append(self._argmax())
            times.append(time.perf_counter())
            for step in range(1, new_tokens):
                self._decode([out[-1]], prompt_tokens + step - 1, 0)
                out.append(self._argmax())
                times.append(time.perf_counter())

        return GenerationSample(
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            batch=1,
            t0=t0,
            token_times=times,
            kv_tokens=prompt_tokens + new_tokens - 1,
            kv_bytes_measured=self.kv_bytes_measured(),
            kv_bytes_computed=self.kv_bytes_computed(),
            peak_memory_bytes=peak.bytes,
            output_ids=[out],
            text=self._tok.decode(out) if self._tok else None,
        )

    # -- quality scoring ----------------------------------------------------

    def scoring_tokenizer(self) -> LlamaTokenizer:
        if self._tok is None:
            raise BackendError("load() must run before scoring")
        return self._tok

    def context_limit(self) -> int | None:
        return self.n_ctx or None

    def score_tokens(
        self, requests: Sequence[Encoded], batch_size: int
    ) -> list[TokenScore]:
        """Log-probabilities of each continuation, one request at a time.

        Every request is decoded whole from an empty cache, never from a
        prefix another request left: llama.cpp's CPU kernels round
        differently with the number of tokens in a call (a 15-token and a
        16-token call give log-probabilities up to 0.3 nats apart at the
        same position), so reusing a prefix would score the choices of one
        item under different arithmetic. Log-softmax is taken in float64.
        """
        import numpy as np

        if self.llm is None:
            raise BackendError("load() must run before scoring")
        scores = []
        for r in requests:
            # The whole text, the continuation's last token too (its logits
            # are dropped): the same call llama.cpp's server makes for an
            # echoed prompt, so both give the same figures.
            seq = r.context + r.continuation
            n = len(r.continuation)
            self._clear()
            rows = self._decode(seq, 0, len(seq) - n - 1, rows=True)[:n]
            total, greedy = 0.0, True
            for row, target in zip(rows, r.continuation, strict=True):
                x = row.astype(np.float64)
                top = x.max()
                total += float(x[target] - top - np.log(np.exp(x - top).sum()))
                greedy = greedy and int(x.argmax()) == target
            scores.append(TokenScore(total, greedy, n))
        return scores

    def generate_text(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        batch_size: int,
        max_length: int | None = None,
    ) -> list[str]:
        """Greedy completions, stopped at end-of-generation or a stop sequence."""
        if self.llm is None or self._tok is None:
            raise BackendError("load() must run before generating")
        tok = self._tok
        vocab = self.lib.llama_model_get_vocab(self.llm._model.model)
        room = max(self.effective_max_length(max_length) - max_new_tokens, 1)
        texts = []
        for p in prompts:
            ids = tok.encode(p)
            if tok.adds_bos and (not ids or ids[0] != tok.bos_id):
                ids = [int(tok.bos_id)] + ids  # type: ignore[arg-type]
            if len(ids) > room:  # keep BOS, drop the oldest prompt tokens
                ids = ids[:1] + ids[len(ids) - room + 1 :]
            self._clear()
            self._decode(ids, 0, len(ids) - 1)
            out: list[int] = []
            text = ""
            while len(out) < max_new_tokens:
                token = self._argmax()
                if self.lib.llama_vocab_is_eog(vocab, token):
                    break
                out.append(token)
                text = tok.decode(out, skip_special_tokens=True)
                if stop and any(s in text for s in stop):
                    break
                self._decode([token], len(ids) + len(out) - 1, 0)
            texts.append(cut_at_stop(text, stop))
        return texts

    def close(self) -> None:
        if self._batch is not None:
            self.lib.llama_batch_free(self._batch)
            self._batch = None
        if self.llm is not None:
            self.llm.close()
            self.llm = None


def _gguf_arch(path: Any) -> arch.Architecture | None:
    """The architecture arithmetic from the GGUF's metadata; None if unknown."""
    from llmarch.inspect import read_model

    try:
        return arch.from_config(read_model(str(path)).config)
    except ModelError as exc:  # UnsupportedArchitecture is one
        log.warning("no KV-cache arithmetic: %s", exc)
        return None


def _file_type(llm: Any) -> str | None:
    """The GGUF's quantisation as llama.cpp names it (``Q4_K - Medium``)."""
    desc = str(llm._model.desc())  # e.g. "gemma3 270M Q4_K - Medium"
    parts = desc.split(" ", 2)
    return parts[2] if len(parts) == 3 else None


__all__ = ["DEFAULT_MAX_LENGTH", "LlamaCppBackend", "cpu_threads"]
