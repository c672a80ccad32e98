"""Log-likelihood scoring shared by backends that hold the model's tokens.

A backend mixes in ``TokenScorer`` and provides three things: its tokenizer
(``scoring_tokenizer``), its context length (``context_limit``) and a way to
score token requests (``score_tokens``). The text rules (join, BOS,
truncation, rolling windows) then come from ``llmarch.quality.scoring`` and
are the same for every local backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmarch.quality.scoring import (
    Encoded,
    ItemError,
    TokenizerLike,
    TokenScore,
    encode_request,
    rolling_requests,
)

# Without a --max-length, requests may use the model's context up to this.
DEFAULT_MAX_LENGTH = 4096
# Perplexity windows predict at most this many tokens each.
ROLLING_STRIDE = 512


class TokenScorer:
    """Text-level scoring on top of a backend's ``score_tokens``."""

    def scoring_tokenizer(self) -> TokenizerLike:
        raise NotImplementedError

    def context_limit(self) -> int | None:
        raise NotImplementedError

    def score_tokens(
        self, requests: Sequence[Encoded], batch_size: int
    ) -> list[TokenScore]:
        raise NotImplementedError

    def effective_max_length(self, max_length: int | None) -> int:
        """The window requests must fit: --max-length, else the model's, capped."""
        limit = self.context_limit()
        if max_length is None:
            return min(limit or DEFAULT_MAX_LENGTH, DEFAULT_MAX_LENGTH)
        return min(max_length, limit) if limit else max_length

    def loglikelihood(
        self,
        requests: Sequence[tuple[str, str]],
        *,
        batch_size: int,
        max_length: int | None = None,
    ) -> list[TokenScore | ItemError]:
        """Score (context, continuation) pairs; an unscorable pair gives ItemError."""
        tok = self.scoring_tokenizer()
        window = self.effective_max_length(max_length)
        out: list[TokenScore | ItemError] = []
        todo: list[tuple[int, Encoded]] = []
        for i, (context, continuation) in enumerate(requests):
            try:
                todo.append(
                    (i, encode_request(tok, context, continuation, max_length=window))
                )
                out.append(ItemError("not scored"))
            except ItemError as exc:
                out.append(exc)
        scores = self.score_tokens([e for _, e in todo], batch_size)
        for (i, enc), score in zip(todo, scores, strict=True):
            out[i] = TokenScore(
                score.logprob, score.greedy, score.tokens, enc.truncated, enc.join
            )
        return out

    def loglikelihood_rolling(
        self, texts: Sequence[str], *, batch_size: int, max_length: int | None = None
    ) -> list[TokenScore]:
        """Summed log-likelihood of every token of each text (strided windows)."""
        tok = self.scoring_tokenizer()
        window = self.effective_max_length(max_length)
        flat: list[Encoded] = []
        owner: list[int] = []
        counts = []
        for i, text in enumerate(texts):
            windows, n = rolling_requests(
                tok, text, max_length=window, stride=ROLLING_STRIDE
            )
            flat += windows
            owner += [i] * len(windows)
            counts.append(n)
        scores = self.score_tokens(flat, batch_size)
        sums = [0.0] * len(texts)
        greedy = [True] * len(texts)
        for i, s in zip(owner, scores, strict=True):
            sums[i] += s.logprob
            greedy[i] = greedy[i] and s.greedy
        return [TokenScore(sums[i], greedy[i], counts[i]) for i in range(len(texts))]
