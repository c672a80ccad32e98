"""results export / import: runs move between databases, duplicates skipped."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmarch.backends.base import GenerationSample
from llmarch.cli import app
from llmarch.errors import ConfigError
from llmarch.exchange import export_runs, import_runs
from llmarch.store import ResultStore


def _store_with_run(path, model="m") -> tuple[ResultStore, str]:
    store = ResultStore(path)
    run_id = store.start_run(model=model, backend="fake", settings={"repeat": 1})
    for i in range(3):
        sample = GenerationSample(
            prompt_tokens=8,
            new_tokens=4,
            batch=1,
            t0=0.0,
            token_times=[0.1, 0.2, 0.3, 0.4 + i],
            prefill_peak_bytes=1000,
            decode_peak_bytes=1200,
        )
        store.add_sample(run_id, sample, repeat=i, is_warmup=False)
    store.add_items(run_id, "arc-easy", "mc", [{"item_id": "q1", "credit": 1.0}])
    store.finish_run(run_id, "completed")
    return store, run_id


def test_round_trip_keeps_every_row_and_skips_duplicates(tmp_path):
    a, run_a = _store_with_run(tmp_path / "a.sqlite", "model-a")
    b, run_b = _store_with_run(tmp_path / "b.sqlite", "model-b")
    export_runs(a, tmp_path / "a.jsonl")
    export_runs(b, tmp_path / "b.jsonl")

    merged = ResultStore(tmp_path / "merged.sqlite")
    first = import_runs(merged, tmp_path / "a.jsonl")
    assert first.as_dict() == {
        "runs_imported": 1,
        "runs_skipped": 0,
        "samples": 3,
        "quality_items": 1,
    }
    import_runs(merged, tmp_path / "b.jsonl")
    again = import_runs(merged, tmp_path / "a.jsonl")
    assert again.runs_imported == 0 and again.runs_skipped == 1

    assert {r["run_id"] for r in merged.runs()} == {run_a, run_b}
    assert merged.run(run_a) == a.run(run_a)
    strip = [{k: v for k, v in s.items() if k != "id"} for s in a.samples(run_a)]
    assert [
        {k: v for k, v in s.items() if k != "id"} for s in merged.samples(run_a)
    ] == strip
    assert merged.items(run_a)[0]["credit"] == 1.0


def test_export_of_chosen_runs_and_unknown_ids(tmp_path):
    a, run_a = _store_with_run(tmp_path / "a.sqlite")
    (_,) = (a.start_run(model="other", backend="fake"),)
    assert export_runs(a, tmp_path / "one.jsonl", [run_a]) == 1
    lines = (tmp_path / "one.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["format"] == "llmarch-results" and len(lines) == 2
    with pytest.raises(ConfigError, match="no run nope"):
        export_runs(a, tmp_path / "x.jsonl", ["nope"])


def test_files_that_are_not_exports_are_refused(tmp_path):
    store = ResultStore(tmp_path / "db.sqlite")
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(ConfigError, match="not an llmarch export"):
        import_runs(store, tmp_path / "x.jsonl")
    (tmp_path / "y.jsonl").write_text("not json\n")
    with pytest.raises(ConfigError, match="line 1 is not JSON"):
        import_runs(store, tmp_path / "y.jsonl")


def test_cli_export_then_import(tmp_path):
    _store_with_run(tmp_path / "a.sqlite")
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "results",
            "export",
            str(tmp_path / "a.jsonl"),
            "--db",
            str(tmp_path / "a.sqlite"),
        ],
    )
    assert done.exit_code == 0, done.output
    target = str(tmp_path / "b.sqlite")
    first = runner.invoke(
        app, ["results", "import", str(tmp_path / "a.jsonl"), "--db", target]
    )
    assert first.exit_code == 0, first.output
    assert "imported 1 runs (3 samples, 1 quality items); skipped 0" in first.output
    second = runner.invoke(
        app, ["results", "import", str(tmp_path / "a.jsonl"), "--db", target]
    )
    assert "imported 0 runs" in second.output and "skipped 1" in second.output
    missing = runner.invoke(app, ["results", "import", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 1 and "cannot read" in missing.output
