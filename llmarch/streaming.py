"""Latency of one streamed API request, from the chunks as they arrived.

Every API backend reduces a response to a list of ``StreamEvent`` (arrival
time, generated text in the chunk, usage figures if the chunk carries them)
and calls ``request_metrics``. The definitions, the same for every server:

- A *text chunk* carries generated text: message content, reasoning text or
  tool-call arguments. A chunk with only a role, an empty string, a finish
  reason or usage figures is not a token.
- TTFT: request sent -> arrival of the first text chunk.
- ITL (inter-token latency): the gaps between consecutive text chunks after
  the first. A chunk may hold several tokens; ITL is per chunk.
- end-to-end: request sent -> arrival of the last text chunk (a trailing
  usage or finish chunk does not extend it).
- output tokens: the server's ``completion_tokens`` where it reports usage.
  Usage is cumulative on servers that repeat it, so the largest figure is
  taken, never the sum. Without usage, the text is counted with the model's
  tokenizer (``tokens_source = "counted"``), or else the text chunks are
  counted (``"chunks"``).
- TPOT: (last text chunk - first text chunk) / (output tokens - 1); absent
  for one token.
- A request with no text chunk failed: it has no TTFT, never a zero one.

>>> events = [StreamEvent(0.30, "Hello"), StreamEvent(0.35, " world"),
...           StreamEvent(0.36, "", completion_tokens=2)]
>>> m = request_metrics(0.0, events)
>>> (m.ttft_s, m.e2e_s, m.output_tokens, round(m.tpot_s, 6))
(0.3, 0.35, 2, 0.05)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StreamEvent:
    """One chunk of a streamed response, as it arrived."""

    t: float
    text: str = ""
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finished: bool = False  # carries a finish reason


@dataclass
class RequestMetrics:
    """Latency and token counts of one request; ``ok`` is False for failures."""

    ok: bool
    error: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    tpot_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    tokens_source: str | None = None  # "usage" | "counted" | "chunks"
    prompt_tokens: int | None = None
    text: str = ""


def request_metrics(
    t_sent: float,
    events: Sequence[StreamEvent],
    *,
    count_tokens: Callable[[str], int] | None = None,
    error: str | None = None,
) -> RequestMetrics:
    """The metrics of one request from its send time and its chunk events."""
    texts = [e for e in events if e.text]
    usage = [e.completion_tokens for e in events if e.completion_tokens is not None]
    prompts = [e.prompt_tokens for e in events if e.prompt_tokens is not None]
    prompt_tokens = max(prompts) if prompts else None
    if not texts:
        return RequestMetrics(
            ok=False,
            error=error or "the server returned no generated text",
            prompt_tokens=prompt_tokens,
        )
    if any(b.t < a.t for a, b in zip(events, events[1:], strict=False)):
        raise ValueError("events must be in arrival order")

    text = "".join(e.text for e in texts)
    if usage:
        tokens, source = max(usage), "usage"
    elif count_tokens is not None:
        tokens, source = count_tokens(text), "counted"
    else:
        tokens, source = len(texts), "chunks"

    first, last = texts[0].t, texts[-1].t
    return RequestMetrics(
        ok=error is None,
        error=error,
        ttft_s=first - t_sent,
        e2e_s=last - t_sent,
        tpot_s=(last - first) / (tokens - 1) if tokens > 1 else None,
        itl_s=[b.t - a.t for a, b in zip(texts, texts[1:], strict=False)],
        output_tokens=tokens,
        tokens_source=source,
        prompt_tokens=prompt_tokens,
        text=text,
    )


def openai_chunk_event(t: float, chunk: Any) -> StreamEvent:
    """A StreamEvent from an OpenAI SDK chunk (chat or completions stream)."""
    text, finished = "", False
    for choice in getattr(chunk, "choices", None) or []:
        finished = finished or bool(getattr(choice, "finish_reason", None))
        delta = getattr(choice, "delta", None)
        if delta is None:  # completions endpoint
            text += getattr(choice, "text", None) or ""
            continue
        text += getattr(delta, "content", None) or ""
        for name in ("reasoning_content", "reasoning"):
            text += getattr(delta, name, None) or ""
        for call in getattr(delta, "tool_calls", None) or []:
            function = getattr(call, "function", None)
            text += getattr(function, "arguments", None) or ""
    usage = getattr(chunk, "usage", None)
    return StreamEvent(
        t=t,
        text=text,
        completion_tokens=getattr(usage, "completion_tokens", None) if usage else None,
        prompt_tokens=getattr(usage, "prompt_tokens", None) if usage else None,
        finished=finished,
    )
