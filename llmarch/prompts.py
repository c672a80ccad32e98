"""Prompts of an exact number of tokens, cut from real English text.

The text (``llmarch/data/prompt_text.txt``, written for llmarch) is tokenised
once without special tokens. A prompt of ``P`` tokens is the model's
beginning-of-sequence token, when its tokenizer adds one, followed by the next
``P - 1`` (or ``P``) text tokens; the token count therefore includes BOS.
Row ``b`` of a batch starts ``b * ROW_OFFSET`` tokens further into the text, so
no two rows are equal; a prompt longer than the text wraps around to its start.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

ROW_OFFSET = 97


@lru_cache(maxsize=1)
def prompt_text() -> str:
    """The shipped text that prompts are cut from."""
    return files("llmarch").joinpath("data/prompt_text.txt").read_text(encoding="utf-8")


def _adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def text_token_ids(tokenizer: Any) -> list[int]:
    """The shipped text as token ids, without special tokens."""
    return list(tokenizer(prompt_text(), add_special_tokens=False)["input_ids"])


def prompt_token_ids(
    tokenizer: Any, *, prompt_tokens: int, batch: int
) -> list[list[int]]:
    """``batch`` rows of exactly ``prompt_tokens`` ids each (BOS included)."""
    if prompt_tokens < 1 or batch < 1:
        raise ValueError("prompt_tokens and batch must be at least 1")
    stream = text_token_ids(tokenizer)
    prefix = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    body = prompt_tokens - len(prefix)

    rows = []
    for b in range(batch):
        start = b * ROW_OFFSET
        rows.append(prefix + [stream[(start + i) % len(stream)] for i in range(body)])
    return rows


# Without a tokenizer, an API prompt is cut to this many words per requested
# token (English prose runs at roughly 0.75 words per token); the server's
# usage figures then give the real count.
WORDS_PER_TOKEN = 0.75


def api_prompt_texts(tokenizer: Any, *, prompt_tokens: int, batch: int) -> list[str]:
    """Prompt texts for an API server (BOS left out: the server adds its own)."""
    if tokenizer is None:
        words = prompt_text().split()
        n = max(1, round(prompt_tokens * WORDS_PER_TOKEN))
        return [
            " ".join(words[(b * ROW_OFFSET + i) % len(words)] for i in range(n))
            for b in range(batch)
        ]
    rows = prompt_token_ids(tokenizer, prompt_tokens=prompt_tokens, batch=batch)
    bos = getattr(tokenizer, "bos_token_id", None)
    return [tokenizer.decode(row[1:] if row and row[0] == bos else row) for row in rows]
