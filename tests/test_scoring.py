"""The scoring rules on hand-built cases whose answers are worked out by hand:
the join between context and continuation, BOS, truncation, rolling windows,
ties, standard errors, answer extraction and perplexity figures."""

from __future__ import annotations

import math

import pytest

from llmarch.quality.scoring import (
    Encoded,
    ItemError,
    choose,
    cut_at_stop,
    encode_request,
    final_number,
    mean_stderr,
    normalise_answer,
    normalised,
    perplexity_figures,
    rolling_requests,
    same_number,
    truncate,
)
from llmarch.quality.tasks import hellaswag_clean


class ToyTokenizer:
    """Greedy longest match over a fixed vocabulary, with character offsets.

    Ids are the vocabulary's positions; ``<s>`` (id 1) is BOS and ``</s>``
    (id 2) is EOS. Anything the vocabulary lacks is a one-character token.
    """

    VOCAB = ["<unk>", "<s>", "</s>", "Answer", ":", " Paris", " Par", "is", "ab"]

    def __init__(self, *, adds_bos: bool = True, bos: bool = True, offsets=True):
        self.vocab = list(self.VOCAB)
        self.bos_id = 1 if bos else None
        self.eos_id = 2
        self.adds_bos = adds_bos
        self.offsets = offsets

    def _id(self, piece: str) -> int:
        if piece not in self.vocab:
            self.vocab.append(piece)
        return self.vocab.index(piece)

    def encode_offsets(self, text: str):
        if not self.offsets:
            raise NotImplementedError
        ids, spans, i = [], [], 0
        pieces = sorted(self.vocab, key=len, reverse=True)
        while i < len(text):
            piece = next((p for p in pieces if p and text.startswith(p, i)), text[i])
            ids.append(self._id(piece))
            spans.append((i, i + len(piece)))
            i += len(piece)
        return ids, spans

    def encode(self, text: str) -> list[int]:
        return self.encode_offsets(text)[0] if self.offsets else self._slow(text)

    def _slow(self, text: str) -> list[int]:
        self.offsets = True
        try:
            return self.encode_offsets(text)[0]
        finally:
            self.offsets = False

    def ids(self, *pieces: str) -> list[int]:
        return [self._id(p) for p in pieces]


# -- join and whitespace ------------------------------------------------------


def test_trailing_space_moves_to_the_continuation():
    tok = ToyTokenizer()
    enc = encode_request(tok, "Answer: ", "Paris")
    # "Answer:" + " Paris": one BOS, two context tokens, one scored token.
    assert enc.context == tok.ids("<s>", "Answer", ":")
    assert enc.continuation == tok.ids(" Paris")
    assert not enc.join and enc.truncated == 0
    assert enc == encode_request(tok, "Answer:", " Paris")


def test_a_token_across_the_join_is_scored_whole():
    tok = ToyTokenizer(adds_bos=False)
    # "xa" + "b": the vocabulary merges "ab", which starts in the context.
    enc = encode_request(tok, "xa", "b")
    assert enc.context == tok.ids("x")
    assert enc.continuation == tok.ids("ab")
    assert enc.join


def test_the_join_without_offsets():
    # A slow tokenizer gives no offsets: the continuation starts where the
    # whole text's tokens stop matching the context's ("x" "a" against "x"
    # "ab"), so the merged token is scored whole there too.
    tok = ToyTokenizer(adds_bos=False, offsets=False)
    enc = encode_request(tok, "xa", "b")
    assert enc.context == tok.ids("x")
    assert enc.continuation == tok.ids("ab")
    assert enc.join


def test_slow_tokenizer_split_by_hand():
    tok = ToyTokenizer(adds_bos=False, offsets=False)
    # "Answer:" is 2 tokens, so tokens 2.. of "Answer: Paris" are scored.
    enc = encode_request(tok, "Answer:", " Paris")
    assert enc.context == tok.ids("Answer", ":")
    assert enc.continuation == tok.ids(" Paris")
    assert not enc.join


def test_a_continuation_longer_than_one_token():
    tok = ToyTokenizer()
    # " Parisis": longest match takes " Paris", then "is".
    enc = encode_request(tok, "Answer:", " Parisis")
    assert enc.continuation == tok.ids(" Paris", "is")


def test_empty_continuations_are_item_errors():
    tok = ToyTokenizer()
    with pytest.raises(ItemError, match="empty continuation"):
        encode_request(tok, "Answer:", "")
    # Only whitespace: it moves, but a continuation of whitespace is still
    # something to score.
    enc = encode_request(tok, "Answer:", " ")
    assert enc.continuation == tok.ids(" ")


# -- BOS --------------------------------------------------------------------


def test_bos_once_never_twice():
    tok = ToyTokenizer()
    plain = encode_request(tok, "Answer:", " Paris")
    already = encode_request(tok, "<s>Answer:", " Paris")
    assert plain.context.count(1) == 1 and plain.context[0] == 1
    assert already.context == plain.context


def test_no_bos_when_the_tokenizer_adds_none():
    tok = ToyTokenizer(adds_bos=False)
    enc = encode_request(tok, "Answer:", " Paris")
    assert enc.context == tok.ids("Answer", ":")


def test_nothing_before_the_first_token_gets_bos_or_eos():
    # The first scored token must be predicted from something: BOS...
    enc = encode_request(ToyTokenizer(adds_bos=False), "", "Answer")
    assert enc.context == [1]
    # ...or EOS where the tokenizer has no BOS.
    enc = encode_request(ToyTokenizer(adds_bos=False, bos=False), "", "Answer")
    assert enc.context == [2]


# -- truncation -------------------------------------------------------------


def test_truncation_drops_the_oldest_context_and_keeps_bos():
    enc = Encoded([1, 10, 11, 12, 13, 14], [20, 21])
    # 8 tokens into 5: room for 3 context tokens, BOS and the 2 newest.
    cut = truncate(enc, 5, keep_first=True)
    assert cut.context == [1, 13, 14] and cut.continuation == [20, 21]
    assert cut.truncated == 3
    cut = truncate(enc, 5, keep_first=False)
    assert cut.context == [12, 13, 14] and cut.truncated == 3
    assert truncate(enc, 8, keep_first=True) == enc  # fits: unchanged


def test_a_continuation_that_cannot_fit_is_an_item_error():
    enc = Encoded([1, 10], [20, 21, 22])
    assert truncate(enc, 4, keep_first=True).context == [1]
    with pytest.raises(ItemError, match="3 tokens.*3-token window"):
        truncate(enc, 3, keep_first=True)


def test_encode_request_records_truncation():
    tok = ToyTokenizer()
    enc = encode_request(tok, "xxxxxxAnswer:", " Paris", max_length=4)
    # BOS + 8 context tokens + 1: keep BOS and the 2 newest (Answer, :).
    assert enc.context == tok.ids("<s>", "Answer", ":")
    assert enc.truncated == 6


# -- rolling windows (perplexity) ---------------------------------------------


def test_rolling_windows_score_every_token_once():
    tok = ToyTokenizer()
    text = "abcdefghij"  # "ab" is one token, then c ... j one each
    ids = tok.encode(text)
    assert len(ids) == 9
    windows, n = rolling_requests(tok, text, max_length=4)
    assert n == 9
    scored = [t for w in windows for t in w.continuation]
    assert scored == ids  # every token once, in order
    # Each window predicts at most 3 (= max_length - 1) tokens, sees at most 4.
    assert [len(w.continuation) for w in windows] == [3, 3, 3]
    assert all(len(w.context) + len(w.continuation) <= 4 for w in windows)
    # The first token is predicted from BOS; later windows start 3 tokens
    # before their end: stream = BOS + ids, window 2 is stream[3:4] + [4:7].
    assert windows[0].context == [1]
    assert windows[1].context == ids[2:3]
    assert windows[2].context == ids[5:6]


def test_rolling_windows_by_hand():
    tok = ToyTokenizer()
    ids = tok.encode("cdefg")  # 5 tokens
    windows, n = rolling_requests(tok, "cdefg", max_length=4, stride=2)
    # stream = BOS c d e f g; windows predict [c d], [e f], [g], each from
    # as many earlier tokens as fit in 4 with what it predicts.
    assert n == 5
    assert [w.continuation for w in windows] == [ids[0:2], ids[2:4], ids[4:5]]
    assert windows[0].context == [1]
    assert windows[1].context == ids[0:2]
    assert windows[2].context == ids[1:4]


# -- multiple choice ----------------------------------------------------------


def test_choices_within_the_tolerance_tie():
    c = choose([-1.0, -1.00005, -2.0], gold=1)
    assert c.best == [0, 1] and c.tied and c.credit == 0.5
    assert choose([-1.0, -1.00005, -2.0], gold=2).credit == 0.0
    # 2e-4 apart is not a tie: the best choice alone.
    c = choose([-1.0, -1.0002], gold=1)
    assert c.best == [0] and not c.tied and c.credit == 0.0
    # Three exactly equal: credit one third, never silently the first.
    assert choose([-3.0, -3.0, -3.0], gold=2).credit == pytest.approx(1 / 3)


def test_length_normalisation_per_character():
    # acc picks " a" (-2 > -3); per character " a" is -1, " bbb" is -0.75.
    logprobs, texts = [-2.0, -3.0], ["a", "bbbb"]
    assert normalised(logprobs, texts) == [-2.0, -0.75]
    assert choose(logprobs, 0).credit == 1.0
    assert choose(normalised(logprobs, texts), 0).credit == 0.0


def test_standard_error_by_hand():
    # Credits 1, 0, 1, 1: mean 0.75; sample variance (3·0.0625 + 0.5625)/3 =
    # 0.25; standard error sqrt(0.25/4) = 0.25.
    assert mean_stderr([1, 0, 1, 1]) == (0.75, pytest.approx(0.25))
    assert mean_stderr([1.0]) == (1.0, None)
    assert mean_stderr([]) == (None, None)
    # The README's example: n = 570, p = 0.574 -> 2.07 points.
    k = round(0.574 * 570)  # 327 right
    _, se = mean_stderr([1] * k + [0] * (570 - k))
    assert se == pytest.approx(math.sqrt(k / 570 * (1 - k / 570) / 569))
    assert round(100 * se, 2) == 2.07


# -- generation -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, number",
    [
        ("so 3 + 4 = 7. The answer is 18.", "18"),
        ("She pays $1,234.50 in total", "1234.50"),
        ("#### -5", "-5"),
        ("it is .5 of it", ".5"),
        ("no number here", None),
    ],
)
def test_final_number(text, number):
    assert final_number(text) == number


def test_numbers_compare_by_value():
    assert same_number("18.00", "18") and same_number("1234.50", "1234.5")
    assert not same_number("18", "81") and not same_number(None, "1")


def test_exact_match_normalisation_and_stop():
    assert normalise_answer("  The  Eiffel-Tower! ") == "the eiffel tower"
    assert cut_at_stop("42\n\nQuestion: next", ["Question:", "</s>"]) == "42\n\n"
    assert cut_at_stop("no stop", ["Question:"]) == "no stop"


def test_perplexity_figures_by_hand():
    # Σ log p = -ln(2) * 20 nats over 10 bytes, 4 words, 5 tokens:
    # bits per byte 2, byte perplexity 4, word ppl e^(20 ln2 / 4) = 2^5,
    # token ppl 2^4.
    f = perplexity_figures(-math.log(2) * 20, tokens=5, n_bytes=10, n_words=4)
    assert f["bits_per_byte"] == pytest.approx(2.0)
    assert f["byte_perplexity"] == pytest.approx(4.0)
    assert f["word_perplexity"] == pytest.approx(32.0)
    assert f["token_perplexity"] == pytest.approx(16.0)


def test_hellaswag_markup_is_removed():
    raw = "How to bake [title] Preheat the oven. [step] Mix the flour."
    assert hellaswag_clean(raw) == "How to bake. Preheat the oven. Mix the flour."
