"""The API backend for OpenAI-compatible servers (vLLM, llama.cpp server,
Ollama, TGI, ``transformers serve``, OpenAI itself), through the ``openai`` SDK.

Every request streams. A setting's ``batch`` becomes that many concurrent
requests; each request is one sample, measured with the definitions of
``llmarch.streaming``. The API key comes from ``--api-key-env`` (default
``OPENAI_API_KEY``); it is handed to the SDK and never logged or stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, ClassVar

from llmarch.backends.api_common import (
    BACKOFF_S,
    MAX_WAIT_S,
    api_sample,
    with_retries,
)
from llmarch.backends.base import Backend, GenerationSample, LoadInfo
from llmarch.errors import BackendError, ConfigError
from llmarch.prompts import api_prompt_texts
from llmarch.quality.scoring import ItemError, TokenScore, cut_at_stop, move_whitespace
from llmarch.streaming import StreamEvent, openai_chunk_event

log = logging.getLogger(__name__)

ENDPOINTS = ("completions", "chat")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class OpenAIBackend(Backend):
    """Streams completions from an OpenAI-compatible server."""

    NAME: ClassVar[str] = "openai"
    # Log-likelihoods need a server that echoes prompt log-probabilities
    # (vLLM, llama.cpp's server); the first request says if it does not.
    QUALITY: ClassVar[frozenset[str]] = frozenset({"loglikelihood", "generate"})

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        endpoint: str = "completions",
        api_key_env: str = DEFAULT_KEY_ENV,
        tokenizer: Any = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"--timeout-s must be above 0, not {timeout_s}")
        if endpoint not in ENDPOINTS:
            raise ConfigError(
                f"--endpoint must be one of {', '.join(ENDPOINTS)}, not '{endpoint}'"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.api_key = os.environ.get(api_key_env) or "EMPTY"
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.device, self.dtype = "api", "server"

    def _client(self) -> Any:
        from openai import AsyncOpenAI

        # llmarch retries itself, to know what each request went through.
        return AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout_s,
            max_retries=0,
        )

    def load(self) -> LoadInfo:
        """Check that the server answers and serves the model."""
        import openai

        async def models() -> list[str]:
            async with self._client() as client:
                page = await client.models.list()
                return [m.id for m in page.data]

        t = time.perf_counter()
        try:
            served = asyncio.run(models())
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach {self.base_url} ({exc}); start the server or fix "
                "--base-url"
            ) from None
        except openai.AuthenticationError:
            raise BackendError(
                f"{self.base_url} refused the API key; set the variable named by "
                "--api-key-env"
            ) from None
        except openai.APIStatusError as exc:
            raise BackendError(
                f"{self.base_url} answered HTTP {exc.status_code} to /models"
            ) from None
        if served and self.model not in served:
            log.warning("%s lists %s, not %s", self.base_url, served, self.model)
        return LoadInfo(
            load_s=time.perf_counter() - t,
            weight_bytes=None,
            peak_memory_bytes=None,
            details={"served_models": served},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "served_model": self.model,
            "endpoint": self.endpoint,
            "tokenizer": self.tokenizer is not None,
        }

    # -- prompts -------------------------------------------------------------

    def prompts(self, prompt_tokens: int, batch: int) -> list[str]:
        """Prompt texts of ``prompt_tokens`` tokens (BOS excluded: servers add it)."""
        return api_prompt_texts(
            self.tokenizer, prompt_tokens=prompt_tokens, batch=batch
        )

    # -- requests ------------------------------------------------------------

    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> list[GenerationSample]:
        texts = self.prompts(prompt_tokens, batch)
        return asyncio.run(self._concurrent(texts, prompt_tokens, new_tokens))

    async def _concurrent(
        self, texts: list[str], prompt_tokens: int, new_tokens: int
    ) -> list[GenerationSample]:
        async with self._client() as client:
            tasks = [
                self._one(client, text, prompt_tokens, new_tokens, len(texts))
                for text in texts
            ]
            return list(await asyncio.gather(*tasks))

    async def _one(
        self,
        client: Any,
        text: str,
        prompt_tokens: int,
        new_tokens: int,
        concurrency: int | None,
        rate: float | None = None,
    ) -> GenerationSample:
        """One streamed request, retried on 429, 5xx and lost connections.

        The clock starts at the first attempt, so a retried request's TTFT
        includes the waiting: that is what its user waits. A stream that breaks
        after text has arrived is not retried; it counts as failed.
        """
        t0, events, error = await with_retries(
            lambda: self._attempt(client, text, new_tokens),
            max_retries=self.max_retries,
        )
        count = (
            (lambda s: len(self.tokenizer(s, add_special_tokens=False)["input_ids"]))
            if self.tokenizer is not None
            else None
        )
        return api_sample(
            t0,
            events,
            error,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            concurrency=concurrency,
            rate=rate,
            count_tokens=count,
        )

    async def _attempt(
        self, client: Any, text: str, new_tokens: int
    ) -> tuple[list[StreamEvent], str | None, bool, float | None]:
        """(events, error, retryable, seconds the server asked to wait)."""
        import openai

        events: list[StreamEvent] = []
        try:
            if self.endpoint == "chat":
                stream = await client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "user", "content": text}],
                    max_tokens=new_tokens,
                    temperature=0.0,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            else:
                stream = await client.completions.create(
                    model=self.model,
                    prompt=text,
                    max_tokens=new_tokens,
                    temperature=0.0,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            async for chunk in stream:
                events.append(openai_chunk_event(time.perf_counter(), chunk))
            if events and not any(e.finished for e in events):
                # The SDK ends quietly when the connection closes; a stream
                # that never gave a finish reason was cut short.
                return events, "stream ended without a finish reason", False, None
        except openai.APIStatusError as exc:
            status = exc.status_code
            return (
                events,
                f"HTTP {status}{server_reason(exc.body)}",
                status == 429 or status >= 500,
                (_retry_after(exc.response.headers.get("retry-after"))),
            )
        except openai.APIConnectionError as exc:  # timeouts included
            return events, type(exc).__name__, True, None
        return events, None, False, None

    # -- quality ---------------------------------------------------------------

    async def _call(self, make: Any) -> Any:
        """A non-streamed request, retried on 429, 5xx and lost connections."""
        import openai

        tries = 0
        while True:
            tries += 1
            try:
                return await make()
            except openai.APIStatusError as exc:
                retry = exc.status_code == 429 or exc.status_code >= 500
                if not retry or tries > self.max_retries:
                    raise BackendError(
                        f"{self.base_url} answered HTTP {exc.status_code}"
                        f"{server_reason(exc.body)}"
                    ) from None
                wait = _retry_after(exc.response.headers.get("retry-after"))
            except openai.APIConnectionError as exc:
                if tries > self.max_retries:
                    raise BackendError(
                        f"cannot reach {self.base_url} ({type(exc).__name__}); "
                        "start the server or fix --base-url"
                    ) from None
                wait = None
            await asyncio.sleep(min(wait or BACKOFF_S * 2 ** (tries - 1), MAX_WAIT_S))

    def _gather(self, jobs: list[Any], limit: int) -> list[Any]:
        async def run() -> list[Any]:
            gate = asyncio.Semaphore(limit)
            async with self._client() as client:

                async def one(job: Any) -> Any:
                    async with gate:
                        return await job(client)

                return list(await asyncio.gather(*(one(j) for j in jobs)))

        return asyncio.run(run())

    async def _echo(self, client: Any, prompt: str) -> Any:
        """Prompt tokens with their log-probabilities (``echo`` + ``logprobs``)."""
        resp = await self._call(
            lambda: client.completions.create(
                model=self.model,
                prompt=prompt,
                max_tokens=1,
                temperature=0.0,
                echo=True,
                logprobs=1,
            )
        )
        lp = resp.choices[0].logprobs if resp.choices else None
        if lp is None or not lp.token_logprobs or lp.text_offset is None:
            raise BackendError(
                f"{self.base_url} returned no prompt log-probabilities (echo=True, "
                "logprobs=1); multiple-choice, LAMBADA and perplexity tasks need "
                "them (vLLM and llama.cpp's server give them). Run generation "
                "tasks such as gsm8k, or run the model locally."
            )
        return lp

    def _check_completions(self) -> None:
        if self.endpoint != "completions":
            raise BackendError(
                "log-likelihood scoring needs --endpoint completions: chat "
                "responses carry no prompt log-probabilities"
            )

    def loglikelihood(
        self,
        requests: Any,
        *,
        batch_size: int,
        max_length: int | None = None,
    ) -> list[Any]:
        """Score each continuation from the server's echoed prompt tokens.

        The rules match local scoring: trailing context whitespace moves to
        the continuation, and the continuation's tokens are those that end
        after the context (a token straddling the join is scored whole). The
        server adds BOS as its model does; truncation is the server's.
        """
        self._check_completions()

        def job(context: str, continuation: str) -> Any:
            async def run(client: Any) -> Any:
                ctx, cont = move_whitespace(context, continuation)
                lp = await self._echo(client, ctx + cont)
                return echo_score(lp, len(ctx), len(ctx + cont))

            return run

        return self._gather([job(c, x) for c, x in requests], batch_size)

    def loglikelihood_rolling(
        self, texts: Any, *, batch_size: int, max_length: int | None = None
    ) -> list[Any]:
        """Every prompt token the server gives a log-probability for is summed."""
        self._check_completions()

        def job(text: str) -> Any:
            async def run(client: Any) -> Any:
                lp = await self._echo(client, text)
                score = echo_score(lp, 0, len(text))
                if isinstance(score, ItemError):
                    raise BackendError(f"{self.base_url}: {score}")
                return score

            return run

        return self._gather([job(t) for t in texts], batch_size)

    def generate_text(
        self,
        prompts: Any,
        *,
        max_new_tokens: int,
        stop: Any,
        batch_size: int,
        max_length: int | None = None,
    ) -> list[str]:
        """Greedy completions; the first four stop sequences go to the server
        (the API's limit), all of them cut the text here."""

        def job(prompt: str) -> Any:
            async def run(client: Any) -> str:
                common = {
                    "model": self.model,
                    "max_tokens": max_new_tokens,
                    "temperature": 0.0,
                    "stop": list(stop)[:4] or None,
                }
                if self.endpoint == "chat":
                    resp = await self._call(
                        lambda: client.chat.completions.create(
                            messages=[{"role": "user", "content": prompt}], **common
                        )
                    )
                    text = resp.choices[0].message.content or ""
                else:
                    resp = await self._call(
                        lambda: client.completions.create(prompt=prompt, **common)
                    )
                    text = resp.choices[0].text or ""
                return cut_at_stop(text, stop)

            return run

        return self._gather([job(p) for p in prompts], batch_size)


def echo_score(lp: Any, cut: int, end: int) -> TokenScore | ItemError:
    """The score of prompt characters ``cut:end`` from echoed log-probabilities.

    A token belongs to the continuation when it starts inside the prompt and
    ends after ``cut``; its end is where the next token starts.
    """
    offsets = list(lp.text_offset)
    chosen = []
    for i, start in enumerate(offsets):
        if start >= end:
            break  # a generated token
        stop = offsets[i + 1] if i + 1 < len(offsets) else end
        if min(stop, end) > cut and stop > start:
            chosen.append(i)
    if not chosen:
        return ItemError("the server's tokens do not cover the continuation")
    total, greedy = 0.0, True
    if cut == 0 and lp.token_logprobs[chosen[0]] is None:
        chosen = chosen[1:]  # a whole text: its first token has nothing before it
        if not chosen:
            return TokenScore(0.0, True, 0)
    for i in chosen:
        value = lp.token_logprobs[i]
        if value is None:
            return ItemError("the server gave no log-probability for the first token")
        total += float(value)
        top = lp.top_logprobs[i] if lp.top_logprobs else None
        best = max(top.values()) if top else None
        greedy = greedy and best is not None and float(value) >= best - 1e-6
    join = offsets[chosen[0]] < cut
    return TokenScore(total, greedy, len(chosen), 0, join)


def server_reason(body: Any, limit: int = 160) -> str:
    """' (what the server said)', cut to ``limit`` characters; '' when nothing."""
    if isinstance(body, dict):
        error = body.get("error")
        body = (
            body.get("detail")
            or (error.get("message") if isinstance(error, dict) else error)
            or body.get("message")
        )
    text = " ".join(str(body or "").split())
    if not text:
        return ""
    return f" ({text[:limit]}{'…' if len(text) > limit else ''})"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds; dates ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
