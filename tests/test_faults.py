"""Retries, failures and load levels against a deliberately faulty local server."""

from __future__ import annotations

import time

import pytest

from llmarch.backends.openai_backend import OpenAIBackend
from llmarch.load import LoadSettings, poisson_offsets, run_level, summarize_level
from tests.fault_server import FaultServer


def _backend(server: FaultServer, retries: int = 2) -> OpenAIBackend:
    backend = OpenAIBackend(
        base_url=server.base_url, model="fault-model", max_retries=retries, timeout_s=10
    )
    backend.load()
    return backend


def test_429_with_retry_after_is_retried_and_waited_for():
    with FaultServer(["429:0.3"]) as server:
        t = time.perf_counter()
        [sample] = _backend(server).generate(prompt_tokens=8, new_tokens=4, batch=1)
        elapsed = time.perf_counter() - t
    assert sample.error is None and sample.output_tokens == 4
    assert server.requests == 2
    assert elapsed >= 0.3  # Retry-After honoured
    # the clock started at the first attempt: TTFT includes the wait
    assert sample.timings.ttft_s >= 0.3


def test_bounded_retries_then_a_counted_failure():
    with FaultServer(["500"] * 10) as server:
        import llmarch.backends.api_common as ob

        ob_backoff = ob.BACKOFF_S
        ob.BACKOFF_S = 0.01
        try:
            [sample] = _backend(server, retries=2).generate(
                prompt_tokens=8, new_tokens=4, batch=1
            )
        finally:
            ob.BACKOFF_S = ob_backoff
    assert server.requests == 3  # one try and two retries
    assert sample.error == "HTTP 500 (broken) after 3 attempts"
    assert sample.timings is None  # a failure, not a zero TTFT


def test_a_stream_that_breaks_is_a_failure_not_retried():
    with FaultServer(["drop:2"]) as server:
        [sample] = _backend(server).generate(prompt_tokens=8, new_tokens=4, batch=1)
    assert server.requests == 1
    assert sample.error is not None and "stream broke" in sample.error


def test_dead_server_fails_cleanly():
    with FaultServer() as server:
        backend = _backend(server, retries=1)
    # the server is gone now
    [sample] = backend.generate(prompt_tokens=8, new_tokens=4, batch=1)
    assert sample.error.startswith("APIConnectionError")


def test_load_levels_and_goodput_by_hand():
    with FaultServer(["500"], words=3, gap_s=0.01) as server:
        import llmarch.backends.api_common as ob

        ob.BACKOFF_S, saved = 0.01, ob.BACKOFF_S
        try:
            backend = _backend(server, retries=0)
            settings = LoadSettings(
                concurrency=[2], rates=[50.0], requests=4, prompt_tokens=8, new_tokens=3
            )
            samples, duration = run_level(backend, "concurrency", 2, settings)
        finally:
            ob.BACKOFF_S = saved
    assert len(samples) == 4 and sum(s.error is not None for s in samples) == 1
    assert all(s.concurrency == 2 for s in samples)
    rows = [
        {
            "error": s.error,
            "output_tokens": s.output_tokens,
            **(
                s.timings.as_dict()
                if s.timings
                else dict.fromkeys(("ttft_s", "tpot_s", "e2e_s"))
            ),
        }
        for s in samples
    ]
    summary = summarize_level(rows, 2.0, slo_ttft_s=10.0, slo_tpot_s=None)
    assert (summary["requests"], summary["completed"], summary["failed"]) == (4, 3, 1)
    assert summary["request_throughput"] == pytest.approx(3 / 2.0)
    assert summary["output_throughput"] == pytest.approx(9 / 2.0)
    assert summary["goodput"] == pytest.approx(3 / 2.0)
    tight = summarize_level(rows, 2.0, slo_ttft_s=0.0, slo_tpot_s=None)
    assert tight["goodput"] == 0


def test_goodput_counts_only_requests_meeting_every_target():
    rows = [
        {"error": None, "output_tokens": 10, "ttft_s": 0.1, "tpot_s": 0.02, "e2e_s": 1},
        {"error": None, "output_tokens": 10, "ttft_s": 0.5, "tpot_s": 0.02, "e2e_s": 1},
        {"error": None, "output_tokens": 10, "ttft_s": 0.1, "tpot_s": 0.09, "e2e_s": 1},
        {"error": None, "output_tokens": 1, "ttft_s": 0.1, "tpot_s": None, "e2e_s": 1},
        {
            "error": "HTTP 500",
            "output_tokens": None,
            "ttft_s": None,
            "tpot_s": None,
            "e2e_s": None,
        },
    ]
    s = summarize_level(rows, 4.0, slo_ttft_s=0.2, slo_tpot_s=0.05)
    # rows 1 and 4 meet both targets (row 4 has one token, hence no TPOT)
    assert s["goodput"] == pytest.approx(2 / 4.0)
    assert s["request_throughput"] == pytest.approx(4 / 4.0)
    assert s["output_throughput"] == pytest.approx(31 / 4.0)
    assert s["errors"] == ["HTTP 500"]
    # TTFT over completed requests: 0.1, 0.1, 0.1, 0.5 -> median 0.1
    assert s["ttft_s_median"] == pytest.approx(0.1)


def test_poisson_arrivals_are_seeded_and_have_the_right_mean():
    a = poisson_offsets(2000, 4.0, seed=1)
    assert a == poisson_offsets(2000, 4.0, seed=1)
    assert a[0] == 0.0 and all(y >= x for x, y in zip(a, a[1:], strict=False))
    mean_gap = a[-1] / (len(a) - 1)
    assert mean_gap == pytest.approx(0.25, rel=0.08)


def test_a_stalled_server_times_out_then_the_retry_succeeds():
    with FaultServer(["sleep:3"]) as server:
        backend = OpenAIBackend(
            base_url=server.base_url, model="fault-model", max_retries=1, timeout_s=0.5
        )
        backend.load()
        [sample] = backend.generate(prompt_tokens=8, new_tokens=4, batch=1)
    assert server.requests == 2
    assert sample.error is None and sample.output_tokens == 4
    # the time-out (0.5 s) and the back-off (0.5 s) are part of TTFT
    assert sample.timings.ttft_s >= 1.0


def test_a_stalled_server_with_no_retries_left_is_a_timeout_failure():
    with FaultServer(["sleep:2"]) as server:
        backend = OpenAIBackend(
            base_url=server.base_url, model="fault-model", max_retries=0, timeout_s=0.3
        )
        backend.load()
        [sample] = backend.generate(prompt_tokens=8, new_tokens=4, batch=1)
    assert sample.error == "APITimeoutError"


def test_each_request_of_a_level_is_handed_over_as_it_finishes():
    seen = []
    with FaultServer(words=2, gap_s=0.0) as server:
        backend = _backend(server)
        settings = LoadSettings(
            concurrency=[], rates=[100.0], requests=3, prompt_tokens=4, new_tokens=2
        )
        samples, _ = run_level(backend, "rate", 100.0, settings, on_sample=seen.append)
    assert seen == samples and len(seen) == 3
    assert all(s.rate == 100.0 and s.concurrency is None for s in seen)


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 0.0, -1.0])
def test_rates_must_be_finite_and_positive(rate):
    from llmarch.errors import ConfigError

    with pytest.raises(ConfigError, match="--rate"):
        LoadSettings(concurrency=[], rates=[rate])


def test_load_where_every_request_fails_exits_1(tmp_path):
    from typer.testing import CliRunner

    import llmarch.backends.api_common as ob
    from llmarch.cli import app

    saved, ob.BACKOFF_S = ob.BACKOFF_S, 0.01
    try:
        with FaultServer(["500"] * 20) as server:
            result = CliRunner().invoke(
                app,
                [
                    "load",
                    "--base-url",
                    server.base_url,
                    "--served-model",
                    "fault-model",
                    "--concurrency",
                    "2",
                    "--requests",
                    "2",
                    "--new-tokens",
                    "2",
                    "--db",
                    str(tmp_path / "l.sqlite"),
                ],
            )
    finally:
        ob.BACKOFF_S = saved
    assert result.exit_code == 1
    assert "every request failed (HTTP 500 (broken) after 3 attempts)" in result.output
    assert "Traceback" not in result.output
