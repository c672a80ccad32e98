"""Log-likelihood scoring in the transformers backend: the numbers equal a
plain forward pass worked through by hand, they do not depend on batch size,
BOS appears once, and generation stops where it should."""

from __future__ import annotations

import pytest
import torch

from llmarch.backends.transformers_backend import TransformersBackend
from llmarch.models import resolve
from llmarch.prompts import prompt_text
from llmarch.quality.scoring import HFTokenizer, encode_request

WORDS = prompt_text().split()


def _backend(folder) -> TransformersBackend:
    backend = TransformersBackend(resolve(str(folder)), device="cpu", dtype="float32")
    backend.load()
    return backend


def _requests(n: int) -> list[tuple[str, str]]:
    """Pairs of varied lengths: contexts of 3..(3+3n) words, 1..4-word endings."""
    out = []
    for i in range(n):
        start = 7 * i
        ctx = " ".join(WORDS[start : start + 3 + 3 * i])
        cont = " " + " ".join(WORDS[start + 3 + 3 * i : start + 4 + 3 * i + i % 4])
        out.append((ctx, cont))
    return out


def _by_hand(backend: TransformersBackend, context: str, continuation: str) -> float:
    """Σ log p(continuation token | everything before), one unpadded forward."""
    enc = encode_request(backend.scoring_tokenizer(), context, continuation)
    ids = torch.tensor([enc.context + enc.continuation])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    first = len(enc.context)
    return sum(
        float(logp[first + k - 1, tok]) for k, tok in enumerate(enc.continuation)
    )


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gemma3"])
def test_scores_equal_an_unpadded_forward(fixture, request):
    backend = _backend(request.getfixturevalue(fixture))
    pairs = _requests(6)
    scores = backend.loglikelihood(pairs, batch_size=6)
    for (ctx, cont), score in zip(pairs, scores, strict=True):
        assert score.logprob == pytest.approx(_by_hand(backend, ctx, cont), abs=1e-4)
        assert score.tokens == len(cont.split())  # one word, one token here


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gemma3"])
def test_scores_do_not_depend_on_batch_size(fixture, request):
    # The Gemma 3 fixture has an 8-token sliding window; these requests run
    # past it, so padding must not shift what each layer sees.
    backend = _backend(request.getfixturevalue(fixture))
    pairs = _requests(12)
    one = backend.loglikelihood(pairs, batch_size=1)
    eight = backend.loglikelihood(pairs, batch_size=8)
    diffs = [abs(a.logprob - b.logprob) for a, b in zip(one, eight, strict=True)]
    assert max(diffs) < 1e-4
    assert [a.greedy for a in one] == [b.greedy for b in eight]


def test_truncation_keeps_the_continuation(tiny_llama):
    from llmarch.quality.scoring import Encoded

    backend = _backend(tiny_llama)
    ctx, cont = " ".join(WORDS[:30]), " " + WORDS[30]
    tok = backend.scoring_tokenizer()
    ctx_ids, cont_ids = tok.encode(ctx), tok.encode(cont)
    assert len(cont_ids) == 1 and not tok.adds_bos
    (short,) = backend.loglikelihood([(ctx, cont)], batch_size=1, max_length=8)
    # Context plus one continuation token into 8: all but the last 7 context
    # tokens are dropped, and the score equals scoring just those 7.
    assert short.truncated == len(ctx_ids) - 7
    (same,) = backend.score_tokens([Encoded(ctx_ids[-7:], cont_ids)], batch_size=1)
    assert short.logprob == pytest.approx(same.logprob, abs=1e-5)


def test_generation_matches_plain_greedy_and_stops(tiny_llama):
    backend = _backend(tiny_llama)
    prompt = " ".join(WORDS[:12])
    (text,) = backend.generate_text([prompt], max_new_tokens=6, stop=[], batch_size=1)
    ids = torch.tensor([backend.scoring_tokenizer().encode(prompt)])
    with torch.no_grad():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=backend.eos_token_id,
        )
    expected = backend.tokenizer.decode(
        out[0, ids.shape[1] :], skip_special_tokens=True
    )
    assert text == expected and text
    cut_word = text.split()[1] if len(text.split()) > 1 else text.split()[0]
    (stopped,) = backend.generate_text(
        [prompt], max_new_tokens=6, stop=[cut_word], batch_size=1
    )
    assert stopped == text[: text.find(cut_word)]


# -- the packaged Gemma 3 270M ------------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    backend = TransformersBackend(resolve("gemma-3-270m"), device="cpu")
    backend.load()
    yield backend
    backend.close()


@pytest.mark.slow
def test_gemma_bos_once(gemma):
    tok = HFTokenizer(gemma.tokenizer)
    assert tok.adds_bos and tok.bos_id == 2
    plain = encode_request(tok, "Question: Why?\nAnswer:", " Because")
    already = encode_request(tok, "<bos>Question: Why?\nAnswer:", " Because")
    assert plain.context.count(2) == 1 and plain.context[0] == 2
    assert already.context.count(2) == 1 and already.context == plain.context


@pytest.mark.slow
def test_gemma_arc_scores_do_not_depend_on_batch_size(gemma):
    from llmarch.quality.tasks import load_task

    docs = load_task("arc-easy").select(8, seed=1234)
    pairs = [
        (c, x)
        for d in docs
        for c, x in zip(d["contexts"], d["continuations"], strict=True)
    ]
    one = gemma.loglikelihood(pairs, batch_size=1)
    eight = gemma.loglikelihood(pairs, batch_size=8)
    diffs = [abs(a.logprob - b.logprob) for a, b in zip(one, eight, strict=True)]
    assert len(pairs) == 32 and max(diffs) < 1e-4
    # And the first equals an unpadded forward pass by hand.
    assert one[0].logprob == pytest.approx(_by_hand(gemma, *pairs[0]), abs=1e-4)
