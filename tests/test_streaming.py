"""Stream metrics on hand-worked event lists."""

from types import SimpleNamespace as NS

import pytest

from llmarch.streaming import StreamEvent, openai_chunk_event, request_metrics


def test_hand_worked_stream():
    # sent at 10.0; role-only chunk at 10.1 is not a token; text at 10.4,
    # 10.5, 10.7, 11.0; a finish chunk at 11.05 and usage at 11.1 do not
    # extend the end-to-end time
    events = [
        StreamEvent(10.1, ""),
        StreamEvent(10.4, "The"),
        StreamEvent(10.5, " cat"),
        StreamEvent(10.7, " sat"),
        StreamEvent(11.0, " down"),
        StreamEvent(11.05, ""),
        StreamEvent(11.1, "", completion_tokens=5, prompt_tokens=12),
    ]
    m = request_metrics(10.0, events)
    assert m.ok
    assert m.ttft_s == pytest.approx(0.4)
    assert m.e2e_s == pytest.approx(1.0)
    assert m.itl_s == pytest.approx([0.1, 0.2, 0.3])
    # 5 tokens from usage (one chunk held two): (11.0 - 10.4) / (5 - 1)
    assert (m.output_tokens, m.tokens_source) == (5, "usage")
    assert m.tpot_s == pytest.approx(0.15)
    assert m.prompt_tokens == 12
    assert m.text == "The cat sat down"


def test_cumulative_usage_is_counted_once():
    events = [
        StreamEvent(1.0, "a", completion_tokens=1),
        StreamEvent(2.0, "b", completion_tokens=2),
        StreamEvent(3.0, "c", completion_tokens=3),
    ]
    m = request_metrics(0.0, events)
    assert m.output_tokens == 3  # not 1 + 2 + 3
    assert m.tpot_s == pytest.approx(1.0)


def test_without_usage_tokens_are_counted_and_marked():
    events = [StreamEvent(0.2, "hello there"), StreamEvent(0.4, " friend")]
    counted = request_metrics(0.0, events, count_tokens=lambda s: len(s.split()))
    assert (counted.output_tokens, counted.tokens_source) == (3, "counted")
    assert counted.tpot_s == pytest.approx(0.1)
    chunks = request_metrics(0.0, events)
    assert (chunks.output_tokens, chunks.tokens_source) == (2, "chunks")


def test_no_text_is_a_failure_not_a_zero_ttft():
    m = request_metrics(0.0, [StreamEvent(0.1, ""), StreamEvent(0.2, "", 0)])
    assert not m.ok and m.ttft_s is None and m.output_tokens is None
    assert "no generated text" in m.error
    m = request_metrics(0.0, [], error="HTTP 503")
    assert not m.ok and m.error == "HTTP 503"


def test_one_token_has_no_tpot():
    m = request_metrics(0.0, [StreamEvent(0.3, "x", completion_tokens=1)])
    assert m.tpot_s is None and m.itl_s == [] and m.e2e_s == pytest.approx(0.3)


def test_openai_chunks():
    role = NS(choices=[NS(delta=NS(role="assistant", content=None))], usage=None)
    content = NS(choices=[NS(delta=NS(content="Hi"))], usage=None)
    reasoning = NS(
        choices=[NS(delta=NS(content=None, reasoning_content="think"))], usage=None
    )
    tool = NS(
        choices=[
            NS(
                delta=NS(
                    content=None, tool_calls=[NS(function=NS(arguments='{"a": 1}'))]
                )
            )
        ],
        usage=None,
    )
    completion = NS(choices=[NS(text=" done")], usage=None)
    usage = NS(choices=[], usage=NS(completion_tokens=7, prompt_tokens=3))
    events = [
        openai_chunk_event(i, c)
        for i, c in enumerate([role, content, reasoning, tool, completion, usage])
    ]
    assert [e.text for e in events] == ["", "Hi", "think", '{"a": 1}', " done", ""]
    assert (events[-1].completion_tokens, events[-1].prompt_tokens) == (7, 3)
    m = request_metrics(-1.0, events)
    assert m.ttft_s == 2.0 and m.e2e_s == 5.0 and m.output_tokens == 7
