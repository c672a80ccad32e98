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

from llmarch.backends.api_common import api_sample, with_retries
from llmarch.backends.base import Backend, GenerationSample, LoadInfo
from llmarch.errors import BackendError, ConfigError
from llmarch.prompts import api_prompt_texts
from llmarch.streaming import StreamEvent, openai_chunk_event

log = logging.getLogger(__name__)

ENDPOINTS = ("completions", "chat")
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class OpenAIBackend(Backend):
    """Streams completions from an OpenAI-compatible server."""

    NAME: ClassVar[str] = "openai"

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
