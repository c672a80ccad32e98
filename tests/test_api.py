"""The OpenAI-compatible backend against a real server: `transformers serve`.

The fixture starts the server on 127.0.0.1 with the packaged Gemma 3 270M
(the converted folder from llmarch's cache) and stops it after the tests.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from llmarch.cli import app
from llmarch.models import ensure_converted, resolve
from tests.servers import free_port, running_server

pytestmark = pytest.mark.slow
cli = CliRunner()


@pytest.fixture(scope="module")
def server():
    exe = shutil.which("transformers")
    if exe is None:
        pytest.fail(
            "`transformers serve` is missing: pip install 'transformers[serving]'"
        )
    folder = str(ensure_converted(resolve("gemma-3-270m")))
    port = free_port()
    with running_server(
        [exe, "serve", "--host", "127.0.0.1", "--port", str(port), folder],
        port,
        name="transformers serve",
        ready_path="/health",
        ready=lambda doc: doc.get("status") == "ok",
        timeout_s=180,
    ) as base:
        yield {"base_url": f"{base}/v1", "model": folder}


def test_local_and_server_agree_and_share_one_table(server, tmp_path):
    db = tmp_path / "both.sqlite"
    common = [
        "--prompt-tokens",
        "16",
        "--new-tokens",
        "8",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--db",
        str(db),
        "--out-dir",
        str(tmp_path),
        "--json",
    ]
    local = cli.invoke(app, ["bench", "gemma-3-270m", "--device", "cpu", *common])
    assert local.exit_code == 0, local.output
    api = cli.invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--backend",
            "openai",
            "--base-url",
            server["base_url"],
            "--served-model",
            server["model"],
            *common,
        ],
    )
    assert api.exit_code == 0, api.output

    con = sqlite3.connect(db)
    runs = dict(con.execute("SELECT backend, run_id FROM runs").fetchall())
    assert set(runs) == {"transformers", "openai"}
    texts = dict(
        con.execute(
            "SELECT r.backend, s.text FROM samples s JOIN runs r USING (run_id)"
        ).fetchall()
    )
    # greedy decoding of the same prompt: the same 8 tokens, locally and served
    assert texts["openai"] == texts["transformers"]
    assert len(texts["openai"]) > 0

    row = con.execute(
        "SELECT output_tokens, tokens_source, ttft_s, tpot_s, e2e_s, error FROM samples"
        " WHERE run_id = ?",
        (runs["openai"],),
    ).fetchone()
    tokens, source, ttft, tpot, e2e, error = row
    assert (tokens, source, error) == (8, "usage", None)
    assert 0 < ttft < e2e
    assert tpot == pytest.approx((e2e - ttft) / 7)


def test_concurrent_requests_are_one_sample_each(server, tmp_path):
    db = tmp_path / "c.sqlite"
    result = cli.invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--backend",
            "openai",
            "--base-url",
            server["base_url"],
            "--served-model",
            server["model"],
            "--prompt-tokens",
            "12",
            "--new-tokens",
            "4",
            "--batch",
            "3",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--db",
            str(db),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    [row] = doc["summary"]
    assert (row["batch"], row["concurrency"], row["n"], row["failed"]) == (1, 3, 3, 0)
    assert all(s["output_tokens"] >= 1 for s in doc["samples"])


def test_unreachable_server_is_one_line(tmp_path):
    result = cli.invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--backend",
            "openai",
            "--base-url",
            f"http://127.0.0.1:{free_port()}/v1",
            "--db",
            str(tmp_path / "u.sqlite"),
        ],
    )
    assert result.exit_code == 1
    assert "cannot reach" in result.output and "--base-url" in result.output
    assert "Traceback" not in result.output


def test_api_key_never_stored(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SECRET_KEY", "sk-test-do-not-store-123")
    db = tmp_path / "k.sqlite"
    result = cli.invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--backend",
            "openai",
            "--api-key-env",
            "MY_SECRET_KEY",
            "--base-url",
            server["base_url"],
            "--served-model",
            server["model"],
            "--prompt-tokens",
            "8",
            "--new-tokens",
            "2",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--db",
            str(db),
            "--out-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sk-test-do-not-store-123" not in result.output
    assert b"sk-test-do-not-store-123" not in db.read_bytes()
    for report in tmp_path.glob("*.*"):
        assert "sk-test-do-not-store-123" not in report.read_text(errors="ignore")


def test_failed_requests_are_counted_not_dropped(server, tmp_path):
    # Gemma 3 270M base has no chat template: the server refuses chat requests
    args = (
        f"bench gemma-3-270m --backend openai --endpoint chat "
        f"--base-url {server['base_url']} --served-model {server['model']} "
        f"--prompt-tokens 12 --new-tokens 4 --batch 2 --repeat 1 --warmup 0 "
        f"--db {tmp_path}/f.sqlite --json"
    )
    result = cli.invoke(app, args.split())
    # every request failed: the results are kept, the exit code says so
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["status"] == "failed"
    [row] = doc["summary"]
    assert (row["n"], row["failed"]) == (0, 2)
    assert row["ttft_s_median"] is None  # no zero TTFT for a failed request
    errors = [s["error"] for s in doc["samples"]]
    assert len(errors) == 2 and all(e.startswith("HTTP 4") for e in errors)
    # the server's own reason travels with the error
    assert all("chat template" in e for e in errors)
    assert "2 of 2 requests failed" in result.stderr
    assert "every request failed" in result.stderr


def test_load_sweep_against_the_server(server, tmp_path):
    db = tmp_path / "load.sqlite"
    args = (
        f"load gemma-3-270m --base-url {server['base_url']} "
        f"--served-model {server['model']} --concurrency 1,2 --rate 20 "
        f"--requests 2 --prompt-tokens 16 --new-tokens 3 --slo-ttft-ms 60000 "
        f"--db {db} --json"
    )
    result = cli.invoke(app, args.split())
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(lv["kind"], lv["value"]) for lv in doc["levels"]] == [
        ("concurrency", 1.0),
        ("concurrency", 2.0),
        ("rate", 20.0),
    ]
    for lv in doc["levels"]:
        assert (lv["requests"], lv["completed"], lv["failed"]) == (2, 2, 0)
        assert lv["request_throughput"] == pytest.approx(2 / lv["duration_s"])
        # every request met the generous TTFT target
        assert lv["goodput"] == pytest.approx(lv["request_throughput"])
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 6
    assert (
        con.execute("SELECT COUNT(*) FROM samples WHERE rate = 20.0").fetchone()[0] == 2
    )


def test_gsm8k_through_the_server_matches_local(server, tmp_path):
    """Generation tasks run through a server with no log-probabilities; greedy
    answers equal the local ones for the same items."""
    db = tmp_path / "q.sqlite"
    common = [
        "--tasks",
        "gsm8k",
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
        "--db",
        str(db),
        "--out-dir",
        str(tmp_path),
        "--json",
    ]
    local = cli.invoke(app, ["eval", "gemma-3-270m", "--device", "cpu", *common])
    assert local.exit_code == 0, local.output
    api_args = ["--backend", "openai", "--base-url", server["base_url"]]
    api_args += ["--served-model", server["model"]]
    api = cli.invoke(app, ["eval", "gemma-3-270m", *api_args, *common])
    assert api.exit_code == 0, api.output
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT r.backend, q.item_id, q.scores_json FROM quality_items q "
        "JOIN runs r USING (run_id) ORDER BY q.item_id"
    ).fetchall()
    texts: dict[str, list[str]] = {}
    for backend, _, scores in rows:
        texts.setdefault(backend, []).append(json.loads(scores)["generated"])
    assert len(texts["openai"]) == 2
    assert texts["openai"] == texts["transformers"]
    assert json.loads(api.stdout)["quality"][0]["items"] == 2

    # Multiple choice needs prompt log-probabilities: one line, exit 1.
    mc = cli.invoke(
        app,
        [
            "eval",
            "gemma-3-270m",
            *api_args,
            "--tasks",
            "arc-easy",
            "--limit",
            "2",
            "--db",
            str(db),
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert mc.exit_code == 1
    assert "no prompt log-probabilities" in mc.output
    assert "Traceback" not in mc.output
