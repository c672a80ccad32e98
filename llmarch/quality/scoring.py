"""The scoring rules of quality tasks, written once for every backend.

Log-likelihood requests
    A request is a context and a continuation. Trailing whitespace of the
    context moves to the front of the continuation (``"Answer: " + "Paris"``
    is scored as ``"Answer:" + " Paris"``). Context and continuation are then
    tokenised *together*, and the continuation's tokens are those that end
    after the context's last character. A token that straddles the join (it
    starts inside the context and ends inside the continuation) belongs to the
    continuation and is scored whole; the request records that it happened.

Beginning of sequence
    A BOS token is put in front when the tokenizer puts one there by default,
    and only when the text does not already start with it: never two. A model
    whose tokenizer adds none gets none, except when nothing would precede
    the first scored token; then BOS, or EOS where there is no BOS, stands in
    front so that the first token has something to be predicted from.

Truncation
    When context plus continuation exceed ``max_length`` tokens, the oldest
    context tokens are dropped (a leading BOS stays); the number dropped is
    recorded. A continuation that cannot fit with at least one token before it
    is an error for that item, not a silent cut.

Multiple choice
    ``acc`` picks the choice with the highest summed log-likelihood, ``acc_norm``
    the highest log-likelihood divided by the choice's length in characters,
    both as lm-evaluation-harness defines them. Choices within
    ``TIE_TOLERANCE`` nats of the best are tied: the item scores 1/k when the
    gold answer is one of k tied choices, and the tie is counted and reported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from llmarch.errors import BackendError

# Scores closer than this (in nats, or nats per character for acc_norm) are a
# tie. It matches the batch-invariance tolerance: closer scores could swap
# order between batch sizes.
TIE_TOLERANCE = 1e-4


class TokenizerLike(Protocol):
    """What the scoring rules need from a tokenizer."""

    bos_id: int | None
    eos_id: int | None
    adds_bos: bool

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and the (start, end) character span of each."""


class HFTokenizer:
    """Adapts a transformers tokenizer to the scoring rules."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        default = tokenizer("a")["input_ids"]
        self.adds_bos = bool(
            self.bos_id is not None
            and len(default) > len(plain)
            and default[0] == self.bos_id
        )
        self.has_offsets = bool(getattr(tokenizer, "is_fast", False))

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not self.has_offsets:
            raise NotImplementedError
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(x) for x in enc["offset_mapping"]]


class ItemError(ValueError):
    """One item cannot be scored (it is recorded as failed, not as wrong)."""


@dataclass(frozen=True)
class Encoded:
    """One log-likelihood request in tokens."""

    context: list[int]  # what the continuation is predicted from (BOS included)
    continuation: list[int]  # the scored tokens
    truncated: int = 0  # context tokens dropped from the left to fit
    join: bool = False  # the first scored token also covers context characters


@dataclass(frozen=True)
class TokenScore:
    """A scored continuation: summed log-probability (nats) and greediness."""

    logprob: float
    greedy: bool  # every continuation token was the model's top choice
    tokens: int
    truncated: int = 0
    join: bool = False


def move_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Trailing whitespace of the context goes to the continuation."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def _prefix_id(tok: TokenizerLike) -> int:
    for candidate in (tok.bos_id, tok.eos_id):
        if candidate is not None:
            return int(candidate)
    raise BackendError("the tokenizer has neither a BOS nor an EOS token to start from")


def _split(
    tok: TokenizerLike, context: str, continuation: str
) -> tuple[int, list[int], bool]:
    """Tokenise context + continuation; return (first scored index, ids, join)."""
    whole = context + continuation
    cut = len(context)
    try:
        ids, offsets = tok.encode_offsets(whole)
    except NotImplementedError:
        # No offsets (a slow tokenizer): the continuation starts where the
        # tokens of the whole text stop matching the context's own tokens.
        # Where nothing merges across the join this is lm-evaluation-harness's
        # split; where a token does, that token is scored whole, as above.
        ids = tok.encode(whole)
        ctx = tok.encode(context)
        k = 0
        while k < min(len(ctx), len(ids)) and ids[k] == ctx[k]:
            k += 1
        return k, ids, k < len(ctx)
    for k, (start, end) in enumerate(offsets):
        if end > cut:
            return k, ids, start < cut
    return len(ids), ids, False


def encode_request(
    tok: TokenizerLike,
    context: str,
    continuation: str,
    *,
    max_length: int | None = None,
) -> Encoded:
    """Apply the join, BOS and truncation rules to one request."""
    context, continuation = move_whitespace(context, continuation)
    if not continuation:
        raise ItemError("empty continuation")
    k, ids, join = _split(tok, context, continuation)
    ctx, cont = ids[:k], ids[k:]
    if not cont:
        raise ItemError("the continuation has no tokens of its own")
    starts_with_bos = bool(ids) and tok.bos_id is not None and ids[0] == tok.bos_id
    if tok.adds_bos and not starts_with_bos:
        ctx = [int(tok.bos_id)] + ctx  # type: ignore[arg-type]
    elif not ctx:
        ctx = [_prefix_id(tok)]
    return truncate(Encoded(ctx, cont, 0, join), max_length, keep_first=tok.adds_bos)


def truncate(enc: Encoded, max_length: int | None, *, keep_first: bool) -> Encoded:
    """Drop the oldest context tokens so the request fits ``max_length``.

    The model reads ``context + continuation[:-1]``, but the rule counts the
    whole request so that a continuation's last token also fits the window.
    """
    total = len(enc.context) + len(enc.continuation)
    if max_length is None or total <= max_length:
        return enc
    if len(enc.continuation) > max_length - 1:
        raise ItemError(
            f"the continuation ({len(enc.continuation)} tokens) does not fit the "
            f"{max_length}-token window"
        )
    room = max_length - len(enc.continuation)
    ctx = enc.context
    if keep_first:  # the leading BOS stays
        kept = [ctx[0]] + ctx[len(ctx) - (room - 1) :]
    else:
        kept = ctx[len(ctx) - room :]
    return Encoded(kept, enc.continuation, len(ctx) - len(kept), enc.join)


def rolling_requests(
    tok: TokenizerLike, text: str, *, max_length: int, stride: int | None = None
) -> tuple[list[Encoded], int]:
    """Split a text into windows that together score every token once.

    Each window predicts the next ``stride`` tokens (at most
    ``max_length - 1``) from as many earlier tokens as fit in ``max_length``;
    the first token is predicted from BOS (or EOS where there is no BOS).
    Returns the windows and the number of scored tokens.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    step = min(stride or max_length - 1, max_length - 1)
    ids = tok.encode(text)
    if not ids:
        return [], 0
    stream = [_prefix_id(tok)] + ids
    windows = []
    for start in range(1, len(stream), step):
        end = min(start + step, len(stream))
        ctx_start = max(0, end - max_length)
        windows.append(Encoded(stream[ctx_start:start], stream[start:end]))
    return windows, len(ids)


# -- multiple choice -------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The outcome of one multiple-choice rule on one item."""

    best: list[int]  # the tied best choices (one index when there is no tie)
    credit: float  # 1/k when gold is among k tied best, else 0

    @property
    def tied(self) -> bool:
        return len(self.best) > 1


def choose(scores: Sequence[float], gold: int, tol: float = TIE_TOLERANCE) -> Choice:
    """The choices within ``tol`` of the highest score, and the item's credit."""
    top = max(scores)
    best = [i for i, s in enumerate(scores) if s >= top - tol]
    credit = 1.0 / len(best) if gold in best else 0.0
    return Choice(best, credit)


def normalised(logprobs: Sequence[float], texts: Sequence[str]) -> list[float]:
    """Log-likelihood per character of each choice (lm-eval's acc_norm)."""
    return [lp / max(len(t), 1) for lp, t in zip(logprobs, texts, strict=True)]


def mean_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and its standard error: sample standard deviation (n−1) / √n."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


# -- generation ------------------------------------------------------------

_NUMBER = re.compile(r"-?[$]?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def final_number(text: str) -> str | None:
    """The last number in ``text``, without $ or thousands commas, or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return found[-1].replace("$", "").replace(",", "")


def same_number(a: str | None, b: str | None) -> bool:
    """Numbers compare by value: ``18``, ``18.0`` and ``18.00`` are equal."""
    if a is None or b is None:
        return False
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return a.strip() == b.strip()


def normalise_answer(text: str) -> str:
    """Exact-match normalisation: case folded, punctuation and extra spaces gone."""
    text = re.sub(r"[^\w\s]", " ", text.casefold())
    return " ".join(text.split())


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Generated text up to the first stop sequence."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if s and at != -1:
            cut = min(cut, at)
    return text[:cut]


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def words(text: str) -> int:
    return len(text.split())


LN2 = math.log(2)


def perplexity_figures(
    logprob: float, *, tokens: int, n_bytes: int, n_words: int
) -> dict[str, float | None]:
    """Corpus figures from a summed log-likelihood (nats) over a text.

    bits per byte = −Σ log p / (ln 2 · UTF-8 bytes); byte perplexity = 2^bpb;
    word and token perplexity = exp(−Σ log p / words or tokens).
    """
    nll = -logprob
    bpb = nll / (LN2 * n_bytes) if n_bytes else None
    return {
        "bits_per_byte": bpb,
        "byte_perplexity": 2**bpb if bpb is not None else None,
        "word_perplexity": math.exp(nll / n_words) if n_words else None,
        "token_perplexity": math.exp(nll / tokens) if tokens else None,
    }
