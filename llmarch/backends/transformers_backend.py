"""The local backend: a Hugging Face transformers model on CPU or CUDA.

Timing: ``model.generate`` runs greedy decoding with a streamer that reads the
clock each time a step's new tokens reach the host. The streamer synchronises
CUDA first, so a reading marks the moment the token really exists. End-of-
sequence never stops a run: the loaded model's generation config has its EOS
id removed, so every run produces exactly the tokens asked for.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers imports the hub

import torch  # noqa: E402

from llmarch import arch, devices, kvcache, memory  # noqa: E402
from llmarch import quant as quant_mod  # noqa: E402
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
# Measured weight bytes must be within this share of the arithmetic.
WEIGHT_TOLERANCE = 0.001


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
        quant: str = "none",
        device_map: str = "none",
        max_memory: str | None = None,
        kv_cache: str = "dynamic",
    ) -> None:
        self.ref = ref
        quant_mod.check_quant(quant)
        devices.check_device_map(device_map)
        self.max_memory = devices.parse_max_memory(max_memory)
        if self.max_memory and device_map != "auto":
            raise ConfigError("--max-memory only applies with --device-map auto")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.quant, self.device_map, self.kv_cache = quant, device_map, kv_cache
        kvcache.check_kv_cache(kv_cache, device=self.device, arch=None)
        self._stats: devices.DeviceStats | None = None
        self._input_device: Any = self.device
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
        if self.quant != "none":
            weights = int(
                quant_mod.weight_arithmetic(config, self.quant, self.dtype).total_bytes
                * WEIGHT_OVERHEAD
            )
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
        if self.device_map == "auto":  # spread over every GPU and the CPU
            free = memory.available_bytes("cpu") + sum(
                int(torch.cuda.mem_get_info(i)[0])
                for i in range(torch.cuda.device_count())
            )
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
        kvcache.check_kv_cache(
            self.kv_cache, device=self.device, arch=_try_arch(config)
        )
        quant_mod.require_bitsandbytes(self.quant, self.device)
        if self.quant == "bnb-4bit" and self.device == "cpu":
            quant_mod.check_cpu_4bit_shapes(config, self.dtype)
        self.check_fits(config)

        with memory.PeakMemory(self.device) as peak:
            t = time.perf_counter()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
                model = AutoModelForCausalLM.from_pretrained(
                    str(folder), **self._load_options()
                )
            except (OSError, ValueError) as exc:
                reason = str(exc).strip().splitlines()[0].rstrip(".")
                raise ModelError(
                    f"cannot load {self.ref.name} from {folder}: {reason}. "
                    "The folder must hold config.json, weights and a tokenizer."
                ) from exc
            except (ImportError, RuntimeError) as exc:
                if self.quant == "none":
                    raise
                reason = str(exc).strip().splitlines()[0].rstrip(".")
                raise BackendError(
                    f"bitsandbytes cannot load {self.ref.name} as {self.quant} on "
                    f"{self.device}: {reason}. Use --quant none or another --device."
                ) from exc
            if self.quant == "none" and self.device_map == "none":
                model.to(self.device)  # type: ignore[arg-type]
            model.eval()
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
        self._input_device = devices.input_device(model)
        on_cuda = any(p.device.type == "cuda" for p in model.parameters())
        self._stats = devices.CudaStats.for_model(model) if on_cuda else None
        weights = self._weight_figures(model, config)
        return LoadInfo(
            load_s=load_s,
            weight_bytes=weights["weight_bytes"],
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
                **{k: v for k, v in weights.items() if k != "weight_bytes"},
            },
        )

    def _load_options(self) -> dict[str, Any]:
        """from_pretrained() arguments for --dtype, --quant and --device-map."""
        options: dict[str, Any] = {"dtype": DTYPES[self.dtype]}
        config = quant_mod.bnb_config(self.quant, DTYPES[self.dtype])
        if config is not None:
            if self.device_map == "auto":  # layers placed on the CPU stay unquantised
                config.llm_int8_enable_fp32_cpu_offload = True
            options["quantization_config"] = config
        if self.device_map == "auto":
            options["device_map"] = "auto"
            if self.max_memory:
                options["max_memory"] = self.max_memory
        elif config is not None:  # bitsandbytes places the weights as it loads
            options["device_map"] = {"": self.device}
        return options

    def _weight_figures(self, model: Any, config: Any) -> dict[str, Any]:
        """Measured weight bytes (total, per device), the arithmetic, and where."""
        by_device = memory.weight_bytes_by_device(model)
        measured = sum(by_device.values())
        figures: dict[str, Any] = {
            "weight_bytes": measured,
            "weight_bytes_by_device": by_device,
            "quant": self.quant,
            "device_map": devices.placement(model),
        }
        # Layers accelerate put on the CPU (or disk) are left unquantised.
        offloaded = [
            name
            for name, where in figures["device_map"].items()
            if name and where in ("cpu", "disk")
        ]
        try:
            expected = quant_mod.weight_arithmetic(
                config, self.quant, self.dtype, skip=offloaded
            )
        except Exception as exc:  # noqa: BLE001 - a model class without a meta build
            log.warning("no weight arithmetic for %s: %s", self.ref.name, exc)
            return figures
        figures["weight_bytes_computed"] = expected.total_bytes
        figures["weight_arithmetic"] = expected.as_dict()
        figures["weight_match"] = (
            abs(measured - expected.total_bytes)
            <= WEIGHT_TOLERANCE * expected.total_bytes
        )
        return figures

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
            "quant": self.quant,
            "kv_cache": self.kv_cache,
            "device_map": self.device_map,
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
        input_ids = torch.tensor(rows, dtype=torch.long, device=self._input_device)
        attention_mask = torch.ones_like(input_ids)
        config = GenerationConfig(
            max_new_tokens=new_tokens,
            do_sample=False,
            return_dict_in_generate=True,
            **kvcache.generation_options(self.kv_cache),
        )
        clock = devices.PhaseClock(self._stats)

        # Hand freed heap back to the OS only when the setting changes: the
        # repeats of one setting then start from the same heap, unslowed.
        setting = (prompt_tokens, new_tokens, batch)
        release = setting != self._last_setting
        self._last_setting = setting
        # On CUDA the clock reads the allocator's peak per phase itself.
        peak = memory.PeakMemory("cpu", release_heap=release)
        with peak if self._stats is None else contextlib.nullcontext():
            t0 = clock.start()
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
                kvcache.computed_kv_bytes(
                    self.arch,
                    self.kv_cache,
                    prompt_tokens=prompt_tokens,
                    new_tokens=new_tokens,
                    batch=batch,
                    bytes_per_element=DTYPES[self.dtype].itemsize,
                )
                if self.arch
                else None
            ),
            peak_memory_bytes=(
                peak.bytes
                if self._stats is None
                else max(clock.prefill_peak_bytes or 0, clock.decode_peak_bytes or 0)
            ),
            prefill_peak_bytes=clock.prefill_peak_bytes,
            decode_peak_bytes=clock.decode_peak_bytes,
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
            input_ids=ids.to(self._input_device),
            attention_mask=mask.to(self._input_device),
            position_ids=positions.to(self._input_device),
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
                input_ids=rows.to(self._input_device),
                attention_mask=mask.to(self._input_device),
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
