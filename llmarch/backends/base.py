"""The backend role: load a model once, then run timed generations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmarch.errors import BackendError
from llmarch.metrics import TokenTimings, timings_from_token_times


@dataclass
class LoadInfo:
    """What loading cost and what the loaded model holds."""

    load_s: float
    weight_bytes: int | None  # None where llmarch cannot see them (an API)
    peak_memory_bytes: int | None
    converted: bool = False
    convert_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationSample:
    """One timed generation: the clock before it and one reading per new token.

    ``token_times`` holds one ``time.perf_counter()`` reading per generation
    step, taken once the step's tokens (one per batch row) are on the host.
    """

    prompt_tokens: int
    new_tokens: int
    batch: int
    t0: float
    token_times: list[float]
    kv_tokens: int | None = None
    kv_bytes_measured: int | None = None
    kv_bytes_computed: int | None = None
    peak_memory_bytes: int | None = None
    # CUDA: the allocator's peak from the request to the first new token, and
    # from then to the last (None on CPU and for APIs).
    prefill_peak_bytes: int | None = None
    decode_peak_bytes: int | None = None
    output_ids: list[list[int]] | None = None
    # API backends: one sample per request, ``batch`` 1, sent with others at
    # ``concurrency``; token_times are the arrivals of text chunks.
    output_tokens: int | None = None
    tokens_source: str | None = None
    concurrency: int | None = 1  # None for requests of a Poisson-rate level
    rate: float | None = None  # Poisson request rate (req/s) of a load run
    error: str | None = None
    text: str | None = None

    @property
    def timings(self) -> TokenTimings | None:
        """Latency figures; None for a failed request (no token arrived)."""
        if self.error is not None or not self.token_times:
            return None
        return timings_from_token_times(
            self.t0,
            self.token_times,
            prompt_tokens=self.prompt_tokens,
            batch=self.batch,
            tokens=self.output_tokens,
        )


class Backend(ABC):
    """Loads one model and generates from it.

    >>> backend.load()
    >>> sample = backend.generate(prompt_tokens=128, new_tokens=64, batch=1)
    >>> sample.timings.ttft_s
    """

    NAME: ClassVar[str]
    # Kinds of quality scoring the backend can do: "loglikelihood" (multiple
    # choice, LAMBADA, perplexity) and "generate" (answers to extract).
    QUALITY: ClassVar[frozenset[str]] = frozenset()
    device: str
    dtype: str

    @abstractmethod
    def load(self) -> LoadInfo:
        """Load weights and tokenizer; raise LlmarchError on user-fixable problems."""

    @abstractmethod
    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> GenerationSample | list[GenerationSample]:
        """Greedy-decode ``new_tokens`` tokens for ``batch`` prompts.

        Local backends return one sample for the whole batch; API backends send
        ``batch`` concurrent requests and return one sample per request.
        """

    def loglikelihood(
        self,
        requests: Sequence[tuple[str, str]],
        *,
        batch_size: int,
        max_length: int | None = None,
    ) -> list[Any]:
        """Score (context, continuation) pairs: TokenScore, or ItemError per pair."""
        raise self.cannot("loglikelihood")

    def loglikelihood_rolling(
        self, texts: Sequence[str], *, batch_size: int, max_length: int | None = None
    ) -> list[Any]:
        """Summed log-likelihood of every token of each text (TokenScore each)."""
        raise self.cannot("loglikelihood")

    def generate_text(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        stop: Sequence[str],
        batch_size: int,
        max_length: int | None = None,
    ) -> list[str]:
        """Greedy completions, cut at the first stop sequence."""
        raise self.cannot("generate")

    def cannot(self, kind: str) -> BackendError:
        what = {
            "loglikelihood": "log-likelihood scoring (multiple-choice, LAMBADA "
            "and perplexity tasks)",
            "generate": "generation tasks",
        }[kind]
        return BackendError(f"the {self.NAME} backend cannot do {what}")

    def describe(self) -> dict[str, Any]:
        """Facts about the loaded model for the run's metadata."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to free by default
        """Free the model."""
