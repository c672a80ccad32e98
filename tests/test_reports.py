"""Reports, history and comparisons on a hand-built database.

Every figure checked here was worked out by hand from the samples stored
(see the comments next to each value); no model runs.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmarch.backends.base import GenerationSample
from llmarch.cli import app
from llmarch.reports import compare_runs, noise_test, resolve_run, write_report
from llmarch.store import ResultStore
from tests.results_builder import MACHINE, add_quality_run

cli = CliRunner()
MIB = 2**20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")


def add_run(
    store: ResultStore,
    model: str,
    run_id: str,
    started_at: str,
    samples: list[tuple[int, int, int, float, float, int]],
) -> str:
    """A completed run; each sample is (P, N, B, TTFT s, step s, peak bytes).

    Token ``k`` arrives at ``TTFT + k * step``, so TPOT is ``step``, decode
    tokens/s ``B / step`` and end-to-end ``TTFT + (N - 1) * step``.
    """
    store.start_run(
        model=model,
        backend="transformers",
        device="cpu",
        dtype="float32",
        metadata={"machine": MACHINE, "model": {"parameters": 5 * 10**8}},
        run_id=run_id,
    )
    store.update_run(run_id, load_json={"weight_bytes": 10**9})
    for i, (p, n, b, ttft, step, peak) in enumerate(samples):
        store.add_sample(
            run_id,
            GenerationSample(
                prompt_tokens=p,
                new_tokens=n,
                batch=b,
                t0=0.0,
                token_times=[ttft + k * step for k in range(n)],
                kv_tokens=p + n - 1,
                kv_bytes_measured=0,
                kv_bytes_computed=0,
                peak_memory_bytes=peak,
            ),
            repeat=i,
            is_warmup=False,
        )
    store.finish_run(run_id, "completed")
    with store.conn:
        store.conn.execute(
            "UPDATE runs SET started_at = ? WHERE run_id = ?", (started_at, run_id)
        )
    return run_id


R1 = "20250101-000000-aaaaaa"  # gemma-3-270m: a sweep over batch and prompt
R2 = "20250102-000000-bbbbbb"  # gemma-3-270m again: faster decode
R3 = "20250103-000000-cccccc"  # gemma-3-270m, a single repeat
R4 = "20250104-000000-dddddd"  # gpt2


def build(path: Path) -> ResultStore:
    store = ResultStore(path)
    add_run(
        store,
        "gemma-3-270m",
        R1,
        "2025-01-01T00:00:00+00:00",
        [
            # TTFT 40, 50, 60 ms; step 0.1 s: decode 10 tokens/s.
            (128, 5, 1, 0.040, 0.1, 600 * MIB),
            (128, 5, 1, 0.050, 0.1, 600 * MIB),
            (128, 5, 1, 0.060, 0.1, 600 * MIB),
            # batch 4, step 0.2 s: decode 4 / 0.2 = 20 tokens/s.
            *[(128, 5, 4, 0.080, 0.2, 700 * MIB)] * 3,
            # a longer prompt: TTFT 200 ms.
            *[(512, 5, 1, 0.200, 0.1, 650 * MIB)] * 3,
        ],
    )
    add_run(
        store,
        "gemma-3-270m",
        R2,
        "2025-01-02T00:00:00+00:00",
        [
            # TTFT 45, 55, 65 ms; decode 12, 12.5, 13 tokens/s.
            (128, 5, 1, 0.045, 1 / 12, 600 * MIB),
            (128, 5, 1, 0.055, 1 / 12.5, 600 * MIB),
            (128, 5, 1, 0.065, 1 / 13, 600 * MIB),
        ],
    )
    add_run(
        store,
        "gemma-3-270m",
        R3,
        "2025-01-03T00:00:00+00:00",
        [(128, 5, 1, 0.050, 0.1, 600 * MIB)],
    )
    add_run(
        store,
        "gpt2",
        R4,
        "2025-01-04T00:00:00+00:00",
        [(128, 5, 1, 0.020, 0.05, 400 * MIB)] * 3,
    )
    add_quality_run(store, "gemma-3-270m", "arc-easy", right=30, items=50)
    add_quality_run(store, "gpt2", "arc-easy", right=20, items=50)
    return store


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The database and one report of each format, written once for the module."""
    root = tmp_path_factory.mktemp("reports")
    store = build(root / "db.sqlite")
    out = {"db": store.path}
    for fmt in ("md", "csv", "json", "html"):
        written = write_report(
            store,
            [],
            fmt=fmt,
            out=root / f"report.{fmt}",
            kv_extra=["falcon-7b", "llama-3.2-1b"],
        )
        out[fmt] = written.path
    store.close()
    return out


def _md_row(text: str, section: str, starts: list[str]) -> list[str]:
    """The cells of the first row of ``section`` whose cells begin with ``starts``."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[: len(starts)] == starts:
            return cells
    raise AssertionError(f"no row {starts} in {section}")


def _md_headers(text: str, section: str) -> list[str]:
    body = text.split(f"## {section}\n", 1)[1]
    line = next(x for x in body.splitlines() if x.startswith("| "))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _md_dict(text: str, section: str, starts: list[str]) -> dict[str, str]:
    headers = _md_headers(text, section)
    return dict(zip(headers, _md_row(text, section, starts), strict=True))


# -- Markdown and CSV hold the stored figures -----------------------------------


def test_markdown_latency_and_throughput_by_hand(reports):
    text = reports["md"].read_text()
    key = ["gemma-3-270m", R1, "128", "5", "1", "1", "3", "0"]
    row = _md_dict(text, "Latency", key)
    # TTFT 40, 50, 60 ms: median 50; p90 at rank 1.8 = 50 + 0.8 * 10 = 58;
    # p99 at rank 1.98 = 59.8.
    assert row["TTFT median (ms)"] == "50.00"
    assert row["TTFT p90 (ms)"] == "58.00"
    assert row["TTFT p99 (ms)"] == "59.80"
    assert row["TPOT median (ms)"] == "100.000"  # step 0.1 s
    assert row["end-to-end median (s)"] == "0.450"  # 0.05 + 4 * 0.1

    row = _md_dict(text, "Throughput and memory", key)
    assert row["prefill median (tokens/s)"] == "2,560.0"  # 128 / 0.05
    assert row["decode median (tokens/s)"] == "10.00"  # 4 tokens / 0.4 s
    assert row["peak memory (MiB)"] == "600.0"
    key4 = ["gemma-3-270m", R1, "128", "5", "4"]
    row = _md_dict(text, "Throughput and memory", key4)
    assert row["decode median (tokens/s)"] == "20.00"  # 4 rows * 4 / 0.8 s
    assert row["prefill median (tokens/s)"] == "6,400.0"  # 4 * 128 / 0.08

    row = _md_row(text, "Quality", ["gemma-3-270m"])
    # 30 of 50 right: 60 %, s.e. sqrt(0.6 * 0.4 / 49) = 7.0 points.
    assert row[3:6] == ["acc %", "60.0", "7.0"]


def test_markdown_every_header_has_a_unit(reports):
    text = reports["md"].read_text()
    for section in ("Latency", "Throughput and memory", "Quality"):
        for header in _md_headers(text, section):
            assert header in ("model", "run", "task") or "(" in header, header


def test_csv_reads_back_with_types_and_values(reports):
    table = pd.read_csv(reports["csv"])
    assert len(table) == 6  # 3 settings of R1, one each of R2, R3 and R4
    for column in ("prompt_tokens", "new_tokens", "batch", "n", "peak_memory_bytes"):
        assert pd.api.types.is_numeric_dtype(table[column]), column
    for column in [c for c in table if c.startswith(("ttft_s_", "decode_tps_"))]:
        assert pd.api.types.is_float_dtype(table[column]), column
    speed = table[table["run_id"] == R1].set_index(["prompt_tokens", "batch"])
    assert pd.api.types.is_integer_dtype(speed["peak_memory_bytes"])
    row = speed.loc[(128, 1)]
    assert row["ttft_s_median"] == pytest.approx(0.050)
    assert row["ttft_s_p90"] == pytest.approx(0.058)
    assert row["ttft_s_std"] == pytest.approx(0.010)
    assert row["decode_tps_median"] == pytest.approx(10.0)
    assert row["e2e_s_median"] == pytest.approx(0.45)
    assert row["peak_memory_bytes"] == 600 * MIB
    assert speed.loc[(128, 4)]["decode_tps_median"] == pytest.approx(20.0)
    assert speed.loc[(512, 1)]["ttft_s_median"] == pytest.approx(0.2)
    quality = pd.read_csv(reports["csv"].with_name("report-quality.csv"))
    assert pd.api.types.is_integer_dtype(quality["items"])
    assert pd.api.types.is_float_dtype(quality["value"])
    acc = quality[quality["metric"] == "acc"].set_index("model")
    assert acc.loc["gemma-3-270m", "value"] == pytest.approx(0.6)  # 30 / 50
    assert acc.loc["gpt2", "stderr"] == pytest.approx(math.sqrt(0.24 / 49))
    # Units: every measured column names its unit as a suffix.
    units = ("_s_", "_tps_", "_bytes", "_tokens")
    counts = {"batch", "concurrency", "n", "failed"}
    fractions = {"mbu", "mfu", "prefill_eff"}  # 0..1 (README: Report columns)
    for column in table.select_dtypes("number"):
        if column in fractions:
            continue
        if not column.startswith("quality_") and column not in counts:
            assert any(u in column or column.endswith(u) for u in units), column


def test_json_parses_with_the_stored_figures(reports):
    doc = json.loads(reports["json"].read_text())
    runs = {r["run"]["run_id"]: r for r in doc["runs"]}
    assert set(runs) >= {R1, R2, R3, R4}
    assert runs[R2]["headline"]["decode_tps"] == pytest.approx(12.5)
    kv = {m["model"]: m for m in doc["kv"]}
    assert {"gemma-3-270m", "gpt2", "falcon-7b", "llama-3.2-1b"} <= set(kv)
    # Gemma 3 270M at 16 bits: 15 sliding layers keep 511 tokens, 3 full keep
    # 1,024: (15 * 511 + 3 * 1024) * 2 * 256 * 2 bytes.
    assert kv["gemma-3-270m"]["kv_bytes_at"]["1024"] == (15 * 511 + 3 * 1024) * 1024
    assert kv["gpt2"]["kv_bytes_per_token"] == 12 * 2 * 768 * 2  # MHA, 12 layers
    front = {p["model"]: p for p in doc["pareto"]["points"]}
    assert front["gpt2"]["quality"] == pytest.approx(0.4)
    assert front["gpt2"]["decode_tps"] == pytest.approx(20.0)


# -- plots and the HTML page -----------------------------------------------------


PLOTS = ("decode-vs-batch", "ttft-vs-prompt", "latency-distribution")
PLOTS += ("kv-vs-context", "pareto")


@pytest.mark.parametrize("name", PLOTS)
def test_each_plot_is_a_png(reports, name):
    import matplotlib.image

    path = reports["md"].with_name(f"report-{name}.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height >= 200 and width >= 300
    assert f"]({path.name})" in reports["md"].read_text()


def test_html_is_self_contained(reports):
    text = reports["html"].read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text, re.I)
    assert links and all(link.startswith("data:") for link in links)
    assert text.count('src="data:image/png;base64,') == len(PLOTS)
    assert "<link" not in text and "<script" not in text and "@import" not in text


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs /usr/bin/chromium (Debian: apt-get install -y chromium)",
)
def test_html_opens_in_headless_chromium(reports, tmp_path):
    import matplotlib.image

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            reports["html"].resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2000, 1200)
    assert image.std() > 0.01  # not a blank page


def test_plots_without_data_are_skipped_with_a_reason(tmp_path):
    store = ResultStore(tmp_path / "db.sqlite")
    add_run(
        store, "my-model", R1, "2025-01-01T00:00:00+00:00", [(128, 5, 1, 0.05, 0.1, 1)]
    )
    written = write_report(store, [], fmt="md", out=tmp_path / "r.md")
    skipped = {p.name: p.skipped for p in written.plots if p.path is None}
    assert set(skipped) == {
        "decode-vs-batch",
        "ttft-vs-prompt",
        "kv-vs-context",
        "pareto",
    }
    assert "Not drawn: no run measured TTFT at two or more" in written.path.read_text()


# -- compare and the noise rule --------------------------------------------------


def test_noise_rule_by_hand():
    # s = 0.01 on both sides, n = 3: 2 * sqrt(2 * 0.0001 / 3) = 0.016330.
    c = noise_test([0.04, 0.05, 0.06], [0.045, 0.055, 0.065], higher_is_better=False)
    assert c.delta == pytest.approx(0.005)
    assert c.threshold == pytest.approx(2 * math.sqrt(2 * 0.0001 / 3))
    assert c.verdict == "within noise"
    c = noise_test([10, 10, 10], [12, 12.5, 13])  # 2 * sqrt(0.25 / 3) = 0.57735
    assert c.threshold == pytest.approx(0.57735, abs=1e-5)
    assert c.verdict == "larger than noise" and c.better is True
    c = noise_test([10, 10, 10], [12])
    assert c.verdict.startswith("noise unknown") and c.threshold is None


def test_compare_two_runs_by_hand(reports):
    store = ResultStore(reports["db"])
    result = compare_runs(store, resolve_run(store, R1), resolve_run(store, "20250102"))
    (group,) = result["settings"]  # the only setting both runs measured
    assert group["setting"] == {
        "prompt_tokens": 128,
        "new_tokens": 5,
        "batch": 1,
        "concurrency": 1,
    }
    changes = {c.figure: c for c in group["changes"]}
    ttft = changes["ttft_s"]
    assert (ttft.a, ttft.b, ttft.delta) == pytest.approx((0.05, 0.055, 0.005))
    assert ttft.threshold == pytest.approx(0.016330, abs=1e-6)
    assert ttft.verdict == "within noise"
    decode = changes["decode_tps"]
    assert (decode.a, decode.b) == pytest.approx((10.0, 12.5))
    assert decode.threshold == pytest.approx(0.57735, abs=1e-5)
    assert decode.verdict == "larger than noise" and decode.better is True
    assert {s["batch"] for s in result["only_a"]} == {1, 4}  # (512, 1) and (128, 4)

    one = compare_runs(store, resolve_run(store, R1), resolve_run(store, R3))
    verdicts = {c.verdict for c in one["settings"][0]["changes"]}
    assert verdicts == {"noise unknown (n = 3/1)"}


def test_compare_command(reports):
    result = cli.invoke(app, ["compare", R1, "20250102", "--db", str(reports["db"])])
    assert result.exit_code == 0, result.output
    assert "TTFT mean (ms)" in result.stdout and "+5.00" in result.stdout
    assert "16.33" in result.stdout  # the TTFT noise, ms
    assert "larger than noise" in result.stdout
    result = cli.invoke(app, ["compare", R1, R2, "--json", "--db", str(reports["db"])])
    doc = json.loads(result.stdout)
    decode = next(
        c for c in doc["settings"][0]["changes"] if c["figure"] == "decode_tps"
    )
    assert decode["delta"] == pytest.approx(2.5)


# -- llmarch results -------------------------------------------------------------


def test_results_list_and_show(reports):
    db = ["--db", str(reports["db"])]
    result = cli.invoke(app, ["results", "--json", *db])
    assert result.exit_code == 0, result.output
    lines = {h["run_id"]: h for h in json.loads(result.stdout)}
    assert lines[R1]["decode_tps"] == pytest.approx(20.0)  # best median, batch 4
    assert lines[R1]["ttft_s"] == pytest.approx(0.05)  # lowest median
    assert lines[R1]["peak_memory_bytes"] == 700 * MIB
    assert lines[R1]["samples"] == 9
    table = cli.invoke(app, ["results", "list", *db])
    assert table.exit_code == 0 and R4 in table.stdout
    shown = cli.invoke(app, ["results", "show", "20250104", "--json", *db])
    assert json.loads(shown.stdout)["run"]["model"] == "gpt2"
    shown = cli.invoke(app, ["results", "show", "20250104", *db])
    assert shown.exit_code == 0 and "run: " + R4 in shown.stdout


def test_results_rm_asks_first(tmp_path):
    store = build(tmp_path / "db.sqlite")
    db = ["--db", str(store.path)]
    kept = cli.invoke(app, ["results", "rm", R3, *db], input="n\n")
    assert kept.exit_code == 1 and "nothing deleted" in kept.output
    assert store.run(R3) is not None
    gone = cli.invoke(app, ["results", "rm", "20250103", "--yes", *db])
    assert gone.exit_code == 0 and "deleted run " + R3 in gone.stdout
    assert store.run(R3) is None and store.samples(R3) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["results", "show", "nope"], "no run 'nope'"),
        (["results", "show", "2025"], "is ambiguous"),
        (["results", "rm", "nope", "--yes"], "no run 'nope'"),
        (["compare", R1, "nope"], "no run 'nope'"),
        (["report", "--format", "pdf"], "--format must be one of md, csv, json, html"),
        (["report", "nope"], "no run 'nope'"),
    ],
)
def test_bad_input_gets_one_line(reports, args, message):
    result = cli.invoke(app, [*args, "--db", str(reports["db"])])
    assert result.exit_code == 1
    assert message in result.output and result.output.count("error:") == 1
    assert "Traceback" not in result.output


def test_report_command_and_bad_paths(reports, tmp_path):
    db = ["--db", str(reports["db"])]
    out = tmp_path / "r.csv"
    result = cli.invoke(app, ["report", R4, "--out", str(out), "--no-plots", *db])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["run_id"].tolist() == [R4]  # format from the suffix
    printed = cli.invoke(app, ["report", R4, "--format", "json", "--out", "-", *db])
    assert json.loads(printed.stdout)["runs"][0]["run"]["run_id"] == R4
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = cli.invoke(app, ["report", "--out", str(blocker / "r.md"), *db])
    assert bad.exit_code == 1 and "choose a writable path with --out" in bad.output
    missing = cli.invoke(app, ["results", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 1 and "no results database" in missing.output
    assert not (tmp_path / "none.sqlite").exists()
