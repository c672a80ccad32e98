"""TTFT, TPOT and tokens/s from a hand-worked token stream."""

import pytest

from llmarch.metrics import timings_from_token_times


def test_timings_hand_worked():
    # batch of 2 prompts of 100 tokens; 4 new tokens per row
    t = timings_from_token_times(
        10.0, [10.5, 10.6, 10.8, 11.1], prompt_tokens=100, batch=2
    )
    assert t.ttft_s == pytest.approx(0.5)
    assert t.tpot_s == pytest.approx(0.6 / 3)  # (11.1 - 10.5) / (4 - 1)
    assert t.e2e_s == pytest.approx(1.1)
    assert t.prefill_tps == pytest.approx(2 * 100 / 0.5)  # 400
    assert t.decode_tps == pytest.approx(2 * 3 / 0.6)  # 10


def test_single_token_has_no_decode_figures():
    t = timings_from_token_times(0.0, [0.25], prompt_tokens=8)
    assert t.ttft_s == 0.25 and t.e2e_s == 0.25
    assert t.tpot_s is None and t.decode_tps is None
    assert t.prefill_tps == pytest.approx(32.0)


def test_bad_streams_are_rejected():
    with pytest.raises(ValueError):
        timings_from_token_times(0.0, [], prompt_tokens=8)
    with pytest.raises(ValueError):
        timings_from_token_times(0.0, [0.3, 0.2], prompt_tokens=8)
    with pytest.raises(ValueError):
        timings_from_token_times(1.0, [0.5], prompt_tokens=8)
