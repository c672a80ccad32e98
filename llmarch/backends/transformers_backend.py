"""The local backend: a Hugging Face transformers model on CPU or CUDA.

Timing: ``model.generate`` runs greedy decoding with a streamer that reads the
clock each time a step's new tokens reach the host. The streamer synchronises
CUDA first, so a reading marks the moment the token really exists. End-of-
sequence never stops a run: the loaded model's generation config has its EOS
id removed, so every run produces exactly the tokens asked for.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers imports the hub

import torch  # noqa: E402

from llmarch import arch, kvcache, memory  # noqa: E402
from llmarch.backends.base import Backend, GenerationSample, LoadInfo  # noqa: E402
from llmarch.errors import BackendError, ConfigError, ModelError, ResourceError  # noqa: E402
from llmarch.models import ModelRef, ensure_converted, parameter_count  # noqa: E402
from llmarch.prompts import prompt_token_ids  # noqa: E402
from llmarch.quality.local import TokenScorer  # noqa: E402
from llmarch.quality.scoring import (  # noqa: E402
    Encoded,
    HFTokenizer,
    TokenScore,
    cut_at_stop,
)

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# Beyond the weights, a run needs activations, logits and the allocator's slack.
WORKING_MEMORY_BYTES = 512 * 2**20
WEIGHT_OVERHEAD = 1.10
GIB = 2**30
# Log-likelihood batches hold their logits (rows x kept positions x vocab, in
# float32) under this; longer requests go in smaller batches.
LOGIT_BUDGET_BYTES = 1 * GIB


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
    if device not in DEVICES:
        raise ConfigError(
            f"--device must be one of {', '.join(DEVICES)}, not '{device}'"
        )
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendError("CUDA is not available on this machine; use --device cpu.")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` is float32 on CPU, bfloat16 on CUDA (float16 where bf16 is absent)."""
    if dtype != "auto" and dtype not in DTYPES:
        raise ConfigError(
            f"--dtype must be one of auto, {', '.join(DTYPES)}, not '{dtype}'"
        )
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _try_arch(config: Any) -> arch.Architecture | None:
    """The architecture arithmetic for ``config``; None for an unknown family.

    A family without arithmetic can still be benchmarked: its computed KV
    column is then empty rather than wrong.
    """
    try:
        return arch.from_config(config)
    except arch.UnsupportedArchitecture as exc:
        log.warning("no KV-cache arithmetic: %s", exc)
        return None


class _TokenClock:
    """A generate() streamer that timestamps every decoding step."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        # generate() first puts the 2-D prompt, then one 1-D step of new tokens.
        if value.dim() > 1:
            return
        if self.cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class _StopOnText:
    """Stops each row once its decoded new text holds a stop sequence.

    Decoding (rather than transformers' token-level stop strings) works with
    any tokenizer; the text is cut at the stop sequence afterwards.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str], width: int) -> None:
        self.tokenizer, self.stop, self.width = tokenizer, list(stop), width

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
        done = [
            any(
                s in self.tokenizer.decode(row[self.width :], skip_special_tokens=True)
                for s in self.stop
            )
            for row in input_ids
        ]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class TransformersBackend(TokenScorer, Backend):
    """Runs a model folder (or a converted GGUF) through transformers."""

    NAME: ClassVar[str] = "transformers"
    QUALITY: ClassVar[frozenset[str]] = frozenset({"loglikelihood", "generate"})

    def __init__(
        self,
        ref: ModelRef,
        *,
        device: str = "auto",
        dtype: str = "auto",
        force: bool = False,
        max_tokens: int = 0,
        max_batch: int = 1,
    ) -> None:
        self.ref = ref
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.force = force
        self.max_tokens = max_tokens
        self.max_batch = max_batch
        self.model: Any = None
        self.tokenizer: Any = None
        self.arch: arch.Architecture | None = None
        self._last_setting: tuple[int, int, int] | None = None
        self._scoring_tok: HFTokenizer | None = None

    # -- loading -----------------------------------------------------------

    def estimate_bytes(self, config: Any = None) -> int | None:
        """Memory the run should need: weights, KV cache, activations, slack.

        Without a config (a GGUF not yet converted) this is the conversion's
        need: de-quantising holds float32 weights twice (state dict and model).
        """
        params = parameter_count(self.ref)
        if params is None:
            return None
        itemsize = DTYPES[self.dtype].itemsize
        if config is None:
            return int(2 * params * 4 * WEIGHT_OVERHEAD) + WORKING_MEMORY_BYTES

        weights = int(params * itemsize * WEIGHT_OVERHEAD)
        tokens, batch = self.max_tokens, self.max_batch
        kv = _try_arch(config)
        kv_bytes = (
            kv.kv_bytes(tokens=tokens, batch=batch, bytes_per_element=itemsize)
            if kv
            else 0
        )
        # Prefill holds, per prompt token, a few hidden-size vectors and one
        # MLP intermediate vector at a time.
        text = config.get_text_config()
        width = getattr(text, "intermediate_size", 0) + 4 * text.hidden_size
        activations = batch * tokens * width * itemsize
        return weights + kv_bytes + activations + WORKING_MEMORY_BYTES

    def check_fits(self, config: Any = None) -> None:
        """Stop before loading a model that clearly will not fit (unless forced)."""
        needed = self.estimate_bytes(config)
        if needed is None or self.force:
            return
        free = memory.available_bytes(self.device)
        if needed > free:
            what = (
                "to de-quantise its GGUF"
                if config is None
                else f"({self.dtype} weights, KV cache for {self.max_tokens} tokens "
                f"x batch {self.max_batch}, working memory)"
            )
            raise ResourceError(
                f"{self.ref.name} needs about {needed / GIB:.1f} GiB on {self.device} "
                f"{what} but only {free / GIB:.1f} GiB is free; choose a smaller "
                "model, dtype, batch or context, or pass --force to try anyway."
            )

    def check_context(self, config: Any) -> None:
        """Refuse settings longer than the model's context window."""
        limit = getattr(config.get_text_config(), "max_position_embeddings", None)
        if limit and self.max_tokens > limit:
            raise ConfigError(
                f"prompt plus new tokens ({self.max_tokens}) exceeds the context "
                f"length of {self.ref.name} ({limit} tokens); lower --prompt-tokens "
                "or --new-tokens."
            )

    def load(self) -> LoadInfo:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        converting = self.ref.needs_conversion
        if converting:
            self.check_fits()
        t = time.perf_counter()
        folder = ensure_converted(self.ref)
        convert_s = time.perf_counter() - t if converting else None

        try:
            config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError, ZeroDivisionError, TypeError) as exc:
            raise ModelError(
                f"cannot read {folder}/config.json: {exc}. Pass a Hugging Face "
                "model folder whose config transformers knows."
            ) from exc
        self.check_context(config)
        self.check_fits(config)

        with memory.PeakMemory(self.device) as peak:
            t = time.perf_counter()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
                model = AutoModelForCausalLM.from_pretrained(
                    str(folder), dtype=DTYPES[self.dtype]
                )
            except (OSError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0].rstrip(".")
                raise ModelError(
                    f"cannot load {self.ref.name} from {folder}: {reason}. "
                    "The folder must hold config.json, weights and a tokenizer."
                ) from exc
            model.to(self.device).eval()  # type: ignore[arg-type]
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            load_s = time.perf_counter() - t

        # Every run must produce exactly the tokens asked for: no EOS stop.
        self.eos_token_id = model.generation_config.eos_token_id
        model.generation_config.eos_token_id = None
        if model.generation_config.pad_token_id is None:
            pad = self.tokenizer.pad_token_id
            model.generation_config.pad_token_id = pad if pad is not None else 0
        self.model = model
        self.arch = _try_arch(model.config)
        return LoadInfo(
            load_s=load_s,
            weight_bytes=memory.module_weight_bytes(model),
            peak_memory_bytes=peak.bytes,
            converted=converting,
            convert_s=convert_s,
            details={
                "folder": str(folder),
                "convert_peak_rss_bytes": (
                    int(self.ref.extra["convert_peak_rss_bytes"])
                    if "convert_peak_rss_bytes" in self.ref.extra
                    else None
                ),
            },
        )

    def describe(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        cfg = self.model.config
        return {
            "model_type": getattr(cfg, "model_type", None),
            "architectures": getattr(cfg, "architectures", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "kv_bytes_per_token": (
                self.arch.kv_bytes_per_token(
                    bytes_per_element=DTYPES[self.dtype].itemsize
                )
                if self.arch
                else None
            ),
            "attention": self.arch.attention_kind() if self.arch else None,
            "layers": getattr(cfg.get_text_config(), "num_hidden_layers", None),
            "sliding_window": getattr(cfg, "sliding_window", None),
            "context_length": getattr(
                cfg.get_text_config(), "max_position_embeddings", None
            ),
        }

    # -- generation --------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> GenerationSample:
        from transformers import GenerationConfig

        if self.model is None:
            raise BackendError("load() must run before generate()")
        rows = prompt_token_ids(
            self.tokenizer, prompt_tokens=prompt_tokens, batch=batch
        )
        input_ids = torch.tensor(rows, dtype=torch.long, device=self.device)
        attention_mask = torch.ones_like(input_ids)
        config = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=False,
            return_dict_in_generate=True,
        )
        clock = _TokenClock(self.device)

        # Hand freed heap back to the OS only when the setting changes: the
        # repeats of one setting then start from the same heap, unslowed.
        setting = (prompt_tokens, new_tokens, batch)
        release = setting != self._last_setting
        self._last_setting = setting
        with memory.PeakMemory(self.device, release_heap=release) as peak:
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                streamer=clock,
            )

        produced = out.sequences.shape[1] - prompt_tokens
        if produced != new_tokens or len(clock.times) != new_tokens:
            raise BackendError(
                f"generate produced {produced} tokens ({len(clock.times)} steps) "
                f"where {new_tokens} were asked for"
            )
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        kv_tokens = prompt_tokens + new_tokens - 1
        sample = GenerationSample(
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            batch=batch,
            t0=t0,
            token_times=clock.times,
            kv_tokens=kv_tokens,
            kv_bytes_measured=kvcache.measured_kv_bytes(cache)
            if cache is not None
            else None,
            kv_bytes_computed=(
                self.arch.kv_bytes(
                    tokens=kv_tokens,
                    batch=batch,
                    bytes_per_element=DTYPES[self.dtype].itemsize,
                )
                if self.arch
                else None
            ),
            peak_memory_bytes=peak.bytes,
            output_ids=out.sequences[:, prompt_tokens:].tolist(),
            text=self.tokenizer.decode(out.sequences[0, prompt_tokens:]),
        )
        del out, cache
        return sample

    # -- quality scoring ----------------------------------------------------

    def scoring_tokenizer(self) -> HFTokenizer:
        if self._scoring_tok is None:
            self._scoring_tok = HFTokenizer(self.tokenizer)
        return self._scoring_tok

    def context_limit(self) -> int | None:
        text = self.model.config.get_text_config()
        limit = getattr(text, "max_position_embeddings", None)
        return int(limit) if limit else None

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else 0)

    @torch.inference_mode()
    def score_tokens(
        self, requests: Sequence[Encoded], batch_size: int
    ) -> list[TokenScore]:
        """Log-probabilities of each continuation, in left-padded batches.

        Left padding lines every row's continuation up at the end, so the
        model computes logits only for the last positions (``logits_to_keep``).
        Positions count from each row's first real token. Longest requests
        go first; the order of results is the order of ``requests``.
        """
        if self.model is None:
            raise BackendError("load() must run before scoring")
        vocab = self.model.config.get_text_config().vocab_size
        order = sorted(
            range(len(requests)),
            key=lambda i: -(len(requests[i].context) + len(requests[i].continuation)),
        )
        results: list[TokenScore | None] = [None] * len(requests)
        start = 0
        while start < len(order):
            keep = len(requests[order[start]].continuation)
            rows = 1
            while (
                rows < batch_size
                and start + rows < len(order)
                and (rows + 1)
                * max(keep, len(requests[order[start + rows]].continuation))
                * vocab
                * 4
                <= LOGIT_BUDGET_BYTES
            ):
                keep = max(keep, len(requests[order[start + rows]].continuation))
                rows += 1
            chunk = order[start : start + rows]
            start += rows
            for i, score in zip(
                chunk, self._score_batch([requests[i] for i in chunk]), strict=True
            ):
                results[i] = score
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: Sequence[Encoded]) -> list[TokenScore]:
        seqs = [r.context + r.continuation[:-1] for r in batch]
        width = max(len(s) for s in seqs)
        keep = max(len(r.continuation) for r in batch)
        pad = self._pad_id()
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[j, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=False,
            logits_to_keep=keep,
        )
        logits = out.logits
        scores = []
        for j, r in enumerate(batch):
            n = len(r.continuation)
            row = torch.log_softmax(logits[j, logits.shape[1] - n :].float(), dim=-1)
            target = torch.tensor(r.continuation, device=row.device)
            picked = row.gather(-1, target[:, None])[:, 0]
            greedy = bool((row.argmax(-1) == target).all())
            scores.append(TokenScore(float(picked.double().sum()), greedy, n))
        return scores

    @torch.inference_mode()
    def generate_text(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        batch_size: int,
        max_length: int | None = None,
    ) -> list[str]:
        """Greedy completions, stopped at EOS or a stop sequence (cut off)."""
        from transformers import GenerationConfig

        if self.model is None:
            raise BackendError("load() must run before generating")
        tok = self.scoring_tokenizer()
        window = self.effective_max_length(max_length)
        room = max(window - max_new_tokens, 1)
        encoded = []
        for p in prompts:
            ids = tok.encode(p)
            if tok.adds_bos and (not ids or ids[0] != tok.bos_id):
                ids = [int(tok.bos_id)] + ids  # type: ignore[arg-type]
            if len(ids) > room:  # keep BOS, drop the oldest prompt tokens
                ids = ids[:1] + ids[len(ids) - room + 1 :]
            encoded.append(ids)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.eos_token_id,
            pad_token_id=self._pad_id(),
        )
        texts: list[str] = [""] * len(prompts)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for b in range(0, len(order), batch_size):
            chunk = order[b : b + batch_size]
            width = max(len(encoded[i]) for i in chunk)
            rows = torch.full((len(chunk), width), self._pad_id(), dtype=torch.long)
            mask = torch.zeros_like(rows)
            for j, i in enumerate(chunk):
                rows[j, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                mask[j, width - len(encoded[i]) :] = 1
            out = self.model.generate(
                input_ids=rows.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                stopping_criteria=[_StopOnText(self.tokenizer, stop, width)]
                if stop
                else None,
            )
            for j, i in enumerate(chunk):
                text = self.tokenizer.decode(out[j, width:], skip_special_tokens=True)
                texts[i] = cut_at_stop(text, stop)
        return texts

    def close(self) -> None:
        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
