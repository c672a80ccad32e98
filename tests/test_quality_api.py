"""Quality scoring through the OpenAI-compatible and Gemini backends.

`transformers serve` returns no prompt log-probabilities, so the parsing of
echoed log-probabilities (what vLLM and llama.cpp's server send) is checked
against the local fault server, whose tokens and scores are known: the
prompt is split at word starts and token i scores −0.5·i, with a top
alternative at −0.75 (see ``tests/fault_server.py``).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmarch.backends.openai_backend import OpenAIBackend
from llmarch.cli import app
from llmarch.errors import BackendError
from llmarch.quality.scoring import TokenScore
from tests.fault_server import FaultServer, GeminiServer

cli = CliRunner()


def _backend(server: FaultServer, endpoint: str = "completions") -> OpenAIBackend:
    return OpenAIBackend(
        base_url=server.base_url, model="fault-model", endpoint=endpoint
    )


def test_continuation_tokens_from_echoed_offsets():
    with FaultServer() as server:
        scores = _backend(server).loglikelihood(
            [
                # "Question:" " x" "\nAnswer:" | " Paris" " is": tokens 3 and 4
                # score -1.5 + -2.0 = -3.5; neither is the top choice.
                ("Question: x\nAnswer:", " Paris is"),
                # The same text cut inside "\nAnswer:": that token straddles the
                # join and is scored whole: -1.0 - 1.5 - 2.0 = -4.5.
                ("Question: x\nAns", "wer: Paris is"),
                # One token, -0.5, above the alternative's -0.75: greedy.
                ("Question:", " x"),
                # Trailing space of the context moves to the continuation.
                ("Question: ", "x"),
            ],
            batch_size=2,
        )
    assert scores[0] == TokenScore(-3.5, False, 2, 0, False)
    assert scores[1] == TokenScore(-4.5, False, 3, 0, True)
    assert scores[2] == TokenScore(-0.5, True, 1, 0, False)
    assert scores[3] == scores[2]
    # The generated token after the prompt is never counted.
    assert all(p.endswith(("is", "x")) for p in server.prompts)


def test_rolling_skips_only_the_unpredictable_first_token():
    with FaultServer() as server:
        (score,) = _backend(server).loglikelihood_rolling(["a b c"], batch_size=1)
    # "a" has no log-probability (nothing before it); " b" -0.5, " c" -1.0.
    assert score == TokenScore(-1.5, False, 2, 0, False)


def test_server_without_prompt_logprobs_is_one_clear_error():
    with FaultServer() as server:
        server.echo = False
        with pytest.raises(BackendError, match="no prompt log-probabilities"):
            _backend(server).loglikelihood([("a", " b")], batch_size=1)


def test_chat_endpoint_cannot_score_loglikelihoods():
    with FaultServer() as server, pytest.raises(BackendError, match="completions"):
        _backend(server, "chat").loglikelihood([("a", " b")], batch_size=1)


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_generation_is_cut_at_the_stop_sequence(endpoint):
    with FaultServer() as server:
        texts = _backend(server, endpoint).generate_text(
            ["Q: 1\nA:", "Q: 2\nA:"],
            max_new_tokens=16,
            stop=["Question:"],
            batch_size=2,
        )
    assert texts == [" The answer is 18.\n\n"] * 2


def test_retries_then_scores():
    with FaultServer(plan=["500", "ok"]) as server:
        (score,) = _backend(server).loglikelihood([("Question:", " x")], batch_size=1)
    assert score.logprob == -0.5 and server.requests == 2


def test_eval_through_an_api_server_end_to_end(tmp_path):
    rows = [
        {"q": "x", "choices": ["Paris is", "Rome"], "gold": 0},
        {"q": "x", "choices": ["Paris is", "Rome"], "gold": 1},
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "t.yaml").write_text(
        "name: capitals\nkind: multiple_choice\ndata: t.jsonl\n"
        'query: "Question: {q}\\nAnswer:"\nchoices_field: choices\ngold_field: gold\n'
    )
    with FaultServer() as server:
        result = cli.invoke(
            app,
            [
                "eval",
                "fault-model",
                "--backend",
                "openai",
                "--base-url",
                server.base_url,
                "--tasks",
                str(tmp_path / "t.yaml"),
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (row,) = doc["quality"]
    # " Paris is" scores -3.5, " Rome" -1.5: Rome is picked for both items,
    # right for the second only: acc 0.5, s.e. = std([0, 1]) / sqrt(2) = 0.5.
    assert row["metrics"]["acc"] == {"value": 0.5, "stderr": 0.5}
    # acc_norm: -3.5 / 8 = -0.4375 against -1.5 / 4 = -0.375: Rome again.
    assert row["metrics"]["acc_norm"]["value"] == 0.5


def test_gemini_runs_generation_and_refuses_loglikelihood(tmp_path, monkeypatch):
    from llmarch.backends.gemini_backend import GeminiBackend

    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with GeminiServer(words=3) as server:
        backend = GeminiBackend(model="gemini-test", base_url=server.base_url)
        texts = backend.generate_text(
            ["Q"], max_new_tokens=8, stop=["w2"], batch_size=1
        )
        assert texts == [" w0 w1 "]
        with pytest.raises(BackendError, match="cannot do log-likelihood"):
            backend.loglikelihood([("a", " b")], batch_size=1)
    assert "loglikelihood" not in GeminiBackend.QUALITY
