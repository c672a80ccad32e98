"""The Google AI Studio / Gemini API backend, through the ``google-genai`` SDK.

Requests stream (``generate_content_stream``) and are measured with the same
definitions as every other API backend (``llmarch.streaming``): thought
parts count as generated text, output tokens are the usage's candidate plus
thought tokens. The key comes from ``GOOGLE_AI_STUDIO_API_KEY`` or
``GEMINI_API_KEY`` and is never logged or stored.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from llmarch.backends.api_common import api_sample, with_retries
from llmarch.backends.base import Backend, GenerationSample, LoadInfo
from llmarch.backends.openai_backend import server_reason
from llmarch.errors import BackendError
from llmarch.prompts import api_prompt_texts
from llmarch.quality.scoring import cut_at_stop
from llmarch.streaming import StreamEvent

KEY_ENVS = ("GOOGLE_AI_STUDIO_API_KEY", "GEMINI_API_KEY")


def gemini_key() -> str | None:
    """The Gemini API key from the environment, if one is set."""
    for name in KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def gemini_chunk_event(t: float, chunk: Any) -> StreamEvent:
    """A StreamEvent from a google-genai streaming response chunk."""
    text, finished = "", False
    for candidate in getattr(chunk, "candidates", None) or []:
        finished = finished or bool(getattr(candidate, "finish_reason", None))
        content = getattr(candidate, "content", None)
        for part in getattr(content, "parts", None) or []:
            text += getattr(part, "text", None) or ""
            call = getattr(part, "function_call", None)
            if call is not None:
                text += str(getattr(call, "args", "") or "")
    usage = getattr(chunk, "usage_metadata", None)
    tokens = None
    if usage is not None and usage.candidates_token_count is not None:
        tokens = usage.candidates_token_count + (usage.thoughts_token_count or 0)
    return StreamEvent(
        t=t,
        text=text,
        completion_tokens=tokens,
        prompt_tokens=getattr(usage, "prompt_token_count", None) if usage else None,
        finished=finished,
    )


class GeminiBackend(Backend):
    """Streams from the Gemini API (or a server speaking its wire format)."""

    NAME: ClassVar[str] = "gemini"
    # The API gives no prompt log-probabilities: generation tasks only.
    QUALITY: ClassVar[frozenset[str]] = frozenset({"generate"})

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        tokenizer: Any = None,
        max_retries: int = 2,
        timeout_s: float = 120.0,
    ) -> None:
        if timeout_s <= 0:
            raise BackendError(f"--timeout-s must be above 0, not {timeout_s}")
        key = gemini_key()
        if key is None:
            raise BackendError(
                "the Gemini backend needs an API key: set GOOGLE_AI_STUDIO_API_KEY "
                "or GEMINI_API_KEY"
            )
        self._key = key
        self.model, self.base_url = model, base_url
        self.tokenizer, self.max_retries = tokenizer, max_retries
        self.timeout_s = timeout_s
        self.device, self.dtype = "api", "server"

    def _client(self) -> Any:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.base_url, timeout=int(self.timeout_s * 1000)
        )
        return genai.Client(api_key=self._key, http_options=options)

    def load(self) -> LoadInfo:
        return LoadInfo(load_s=0.0, weight_bytes=None, peak_memory_bytes=None)

    def describe(self) -> dict[str, Any]:
        return {
            "api_model": self.model,
            "base_url": self.base_url or "Google AI Studio",
        }

    def generate(
        self, *, prompt_tokens: int, new_tokens: int, batch: int
    ) -> list[GenerationSample]:
        texts = api_prompt_texts(
            self.tokenizer, prompt_tokens=prompt_tokens, batch=batch
        )
        client = self._client()

        async def run() -> list[GenerationSample]:
            return list(
                await asyncio.gather(
                    *(
                        self._one(client, t, prompt_tokens, new_tokens, batch)
                        for t in texts
                    )
                )
            )

        return asyncio.run(run())

    def generate_text(
        self,
        prompts: Any,
        *,
        max_new_tokens: int,
        stop: Any,
        batch_size: int,
        max_length: int | None = None,
    ) -> list[str]:
        """Greedy completions (temperature 0), cut at the first stop sequence."""
        from google.genai import types

        config = types.GenerateContentConfig(
            max_output_tokens=max_new_tokens,
            temperature=0.0,
            stop_sequences=list(stop)[:5] or None,
        )
        client = self._client()
        gate = asyncio.Semaphore(batch_size)

        async def one(prompt: str) -> str:
            async with gate:
                _, events, error = await with_retries(
                    self._attempt(client, prompt, config),
                    max_retries=self.max_retries,
                )
            if error is not None:
                raise BackendError(f"the Gemini API failed a request: {error}")
            return cut_at_stop("".join(e.text for e in events), stop)

        async def run() -> list[str]:
            return list(await asyncio.gather(*(one(p) for p in prompts)))

        return asyncio.run(run())

    def _attempt(self, client: Any, text: str, config: Any) -> Any:
        """One streamed request as a retryable attempt."""
        from google.genai import errors

        async def attempt() -> tuple[list[StreamEvent], str | None, bool, float | None]:
            events: list[StreamEvent] = []
            try:
                stream = await client.aio.models.generate_content_stream(
                    model=self.model, contents=text, config=config
                )
                async for chunk in stream:
                    events.append(gemini_chunk_event(time.perf_counter(), chunk))
            except errors.APIError as exc:
                code = exc.code or 0
                reason = server_reason(getattr(exc, "message", None))
                return (
                    events,
                    f"HTTP {exc.code}{reason}",
                    code == 429 or code >= 500,
                    None,
                )
            except Exception as exc:  # noqa: BLE001 - the SDK's transport raises
                # its own HTTP library's errors (refused, reset, timed out)
                return events, type(exc).__name__, True, None
            if events and not any(e.finished for e in events):
                return events, "stream ended without a finish reason", False, None
            return events, None, False, None

        return attempt

    async def _one(
        self,
        client: Any,
        text: str,
        prompt_tokens: int,
        new_tokens: int,
        concurrency: int,
    ) -> GenerationSample:
        from google.genai import types

        config = types.GenerateContentConfig(
            max_output_tokens=new_tokens, temperature=0.0
        )
        attempt = self._attempt(client, text, config)

        t0, events, error = await with_retries(attempt, max_retries=self.max_retries)
        return api_sample(
            t0,
            events,
            error,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            concurrency=concurrency,
        )
