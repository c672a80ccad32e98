"""The recommender on hand-built results where the right answer is known:
a constraint that removes the fastest model, a tie, a profile nothing meets,
a candidate with only estimates, the Pareto front, the run chosen among
several, and malformed profiles with every bad field named."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from llmarch import arch
from llmarch.candidates import gather
from llmarch.cli import app
from llmarch.errors import ConfigError
from llmarch.inspect import read_model
from llmarch.profiles import builtin_paths, get_profile, override, parse_profile
from llmarch.recommend import recommend
from tests.results_builder import (
    HERE,
    OTHER,
    add_quality_run,
    add_speed_run,
    store_at,
)

cli = CliRunner()
GB = 10**9


def _profile(**constraints):
    weights = constraints.pop("weights", {"decode_tps": 0.5, "memory": 0.5})
    tasks = constraints.pop("quality_tasks", [])
    dtype = constraints.pop("estimate_dtype", "bfloat16")
    return parse_profile(
        {
            "name": "test",
            "workload": {"prompt_tokens": 128, "new_tokens": 9, "batch": 1},
            "constraints": constraints,
            "weights": weights,
            "quality_tasks": tasks,
            "estimate_dtype": dtype,
        },
        "test profile",
    )


def _recommend(store, profile, estimates=False):
    candidates, cal = gather(store, profile, here=HERE, estimates=estimates)
    return recommend(candidates, profile), cal


def _by_model(result):
    return {r.candidate.model: r for r in result["ranked"]}


def test_a_constraint_removes_the_fastest_model(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "fast-big", decode_tps=40, ttft_s=0.1, peak_bytes=10 * GB)
    add_speed_run(store, "slow-small", decode_tps=10, ttft_s=0.3, peak_bytes=2 * GB)
    result, _ = _recommend(store, _profile(max_memory_gb=4))
    top, out = result["ranked"]
    assert top.candidate.model == "slow-small" and top.rank == 1
    assert out.candidate.model == "fast-big" and not out.passed and out.rank is None
    fail = out.first_failure
    assert fail.name == "max_memory_gb" and fail.value == pytest.approx(10.0)
    assert fail.text == "10 GB > 4 GB"
    assert "slow-small (transformers) is the pick for test" in result["explanation"]
    assert "1 of 2 candidates pass" in result["explanation"]


def test_scores_by_hand(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "a", decode_tps=20, ttft_s=0.1, peak_bytes=4 * GB)
    add_speed_run(store, "b", decode_tps=10, ttft_s=0.1, peak_bytes=1 * GB)
    profile = _profile(weights={"decode_tps": 0.75, "memory": 0.25})
    result, _ = _recommend(store, profile)
    r = _by_model(result)
    # a: 0.75 * 20/20 + 0.25 * 1/4 = 0.8125;  b: 0.75 * 10/20 + 0.25 * 1 = 0.625
    assert r["a"].score == pytest.approx(0.8125)
    assert r["b"].score == pytest.approx(0.625)
    assert r["a"].parts == pytest.approx({"decode_tps": 1.0, "memory": 0.25})
    assert [x.candidate.model for x in result["ranked"]] == ["a", "b"]
    assert result["confidence"]["lead"] == pytest.approx(0.1875)


def test_a_tie_shares_the_rank(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    # 0.5 * 20/20 + 0.5 * 1/4 = 0.625 = 0.5 * 5/20 + 0.5 * 1/1
    add_speed_run(store, "a", decode_tps=20, ttft_s=0.1, peak_bytes=4 * GB)
    add_speed_run(store, "b", decode_tps=5, ttft_s=0.1, peak_bytes=1 * GB)
    result, _ = _recommend(store, _profile())
    a, b = result["ranked"]
    assert a.score == pytest.approx(0.625) and b.score == pytest.approx(0.625)
    assert a.rank == b.rank == 1
    assert "tied with" in result["explanation"]
    assert result["confidence"]["level"] == "medium"


def test_nothing_passes_names_the_constraint_and_the_relaxation(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "a", decode_tps=20, ttft_s=0.2, peak_bytes=4 * GB)
    add_speed_run(store, "b", decode_tps=8, ttft_s=0.9, peak_bytes=1 * GB)
    add_speed_run(store, "c", decode_tps=3, ttft_s=0.05, peak_bytes=9 * GB)
    profile = _profile(min_decode_tps=30, max_ttft_ms=500)
    result, _ = _recommend(store, profile)
    assert result["empty"] and all(r.rank is None for r in result["ranked"])
    rel = result["relaxations"]
    # decode removes all three; TTFT removes b only.
    assert rel["removed_most"] == "min_decode_tps" and rel["removed"] == 3
    assert rel["counts"] == {"min_decode_tps": 3, "max_ttft_ms": 1}
    # a and c fail only the decode limit: relaxing it to 20 admits a.
    assert rel["relax"]["min_decode_tps"]["to"] == pytest.approx(20)
    assert rel["relax"]["min_decode_tps"]["admits"] == "a (transformers)"
    text = result["explanation"]
    assert "Nothing meets the test profile" in text
    assert "min_decode_tps removed the most candidates (3 of 3)" in text
    assert "min_decode_tps to 20 would admit a (transformers)" in text


def test_unknown_figures_fail_their_constraint(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "a", decode_tps=20, ttft_s=0.2, peak_bytes=GB)
    result, _ = _recommend(store, _profile(min_quality={"arc-easy": 0.5}))
    (a,) = result["ranked"]
    assert not a.passed
    assert a.first_failure.name == "min_quality.arc-easy"
    assert a.first_failure.text.startswith("unknown")


def test_quality_comes_from_the_full_split(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "a", decode_tps=20, ttft_s=0.2, peak_bytes=GB)
    add_quality_run(store, "a", "arc-easy", right=60, items=100)
    add_quality_run(store, "a", "arc-easy", right=9, items=10, limit=10)  # later
    profile = _profile(
        min_quality={"arc-easy": 0.55},
        weights={"quality": 1.0},
        quality_tasks=["arc-easy"],
    )
    result, _ = _recommend(store, profile)
    (a,) = result["ranked"]
    f = a.candidate.quality["arc-easy"]
    assert f.value == pytest.approx(0.6) and "100 items" in f.note
    # standard error sqrt(0.6 * 0.4 / 99)
    assert f.spread == pytest.approx(math.sqrt(0.24 / 99))
    assert a.passed and a.checks[0].text == "60 % >= 55 %"


def test_the_latest_run_on_this_machine_is_used(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(
        store, "a", decode_tps=10, ttft_s=0.2, peak_bytes=GB,
        started_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    add_speed_run(
        store, "a", decode_tps=12, ttft_s=0.2, peak_bytes=GB,
        started_at="2026-02-01T00:00:00+00:00",
    )  # fmt: skip
    add_speed_run(
        store, "a", decode_tps=99, ttft_s=0.2, peak_bytes=GB, machine=OTHER,
        started_at="2026-03-01T00:00:00+00:00",
    )  # fmt: skip
    result, _ = _recommend(store, _profile())
    (a,) = result["ranked"]
    assert a.candidate.decode_tps.value == pytest.approx(12)
    assert any(
        "latest run on this machine" in x and "of 3" in x for x in a.candidate.choices
    )


def test_the_setting_nearest_the_workload_is_read(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    run = add_speed_run(
        store, "a", decode_tps=10, ttft_s=0.2, peak_bytes=GB, prompt_tokens=512
    )
    profile = _profile()
    result, _ = _recommend(store, profile)
    (a,) = result["ranked"]
    assert f"run {run}, P=512" in a.candidate.decode_tps.note


def test_the_pareto_front(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    for name, tps, mem, right in [
        ("a", 10, 2, 60),  # on the front
        ("b", 5, 3, 50),  # a beats it on all three
        ("c", 2, 8, 70),  # best quality: on the front
        ("d", 10, 2, 60),  # equal to a: neither dominates
    ]:
        add_speed_run(store, name, decode_tps=tps, ttft_s=0.2, peak_bytes=mem * GB)
        add_quality_run(store, name, "arc-easy", right=right, items=100)
    profile = _profile(weights={"quality": 1.0}, quality_tasks=["arc-easy"])
    result, _ = _recommend(store, profile)
    front = {m for m, r in _by_model(result).items() if r.pareto}
    assert front == {"a", "c", "d"}
    assert result["ranked"][0].candidate.model == "c"  # quality alone counts


def test_confidence_falls_when_the_lead_is_within_noise(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    # 11 vs 10 tok/s, but repeats spread +/-20 %: the lead is noise.
    add_speed_run(store, "a", decode_tps=11, ttft_s=0.2, peak_bytes=GB, jitter=0.2)
    add_speed_run(store, "b", decode_tps=10, ttft_s=0.2, peak_bytes=GB, jitter=0.2)
    result, _ = _recommend(store, _profile(weights={"decode_tps": 1.0}))
    conf = result["confidence"]
    assert conf["level"] == "medium" and conf["holds_under_noise"] is False
    # Without the spread, the same lead holds.
    store2 = store_at(tmp_path / "db2.sqlite")
    add_speed_run(store2, "a", decode_tps=11, ttft_s=0.2, peak_bytes=GB)
    add_speed_run(store2, "b", decode_tps=10, ttft_s=0.2, peak_bytes=GB)
    result, _ = _recommend(store2, _profile(weights={"decode_tps": 1.0}))
    assert result["confidence"]["level"] == "high"


# A measured run's work and this machine's limits, chosen so MBU and MFU come
# out by hand: one layer of 4 query heads and 1 KV head of 250 + 250
# elements at 2 bytes -> 1000 KV bytes per token; 5e8 parameters of which
# 1e8 are the output projection; 1 GB of weights.
WORK = {
    "params_total": 5 * 10**8,
    "params_active_compute": 5 * 10**8,
    "lm_head_params": 10**8,
    "weight_bytes": 10**9,
    "kv_bytes_per_element": 2,
    "layers": [
        {
            "count": 1, "attention": "full", "window": None, "q_heads": 4,
            "kv_heads": 1, "head_dim": 250, "v_head_dim": 250,
        }
    ],
}  # fmt: skip
LIMITS = {"read_bandwidth": 2e10, "matmul_flops": {"float32": 1e12, "bfloat16": 5e11}}
# P=128, N=9, B=1 at 10 tok/s and TTFT 0.2 s:
# step bytes = 1e9 + 1000 * mean(129..136) = 1e9 + 132500
MBU = (1e9 + 132_500) * 10 / 2e10  # 0.50006625
# prefill FLOPs = 2*128*(5e8 - 1e8) + 2*4*500*(128*129/2) + 2*1e8
FLOPS = 2 * 128 * 4e8 + 4000 * 8256 + 2e8  # 102,633,024,000
MFU = FLOPS / 0.2 / 1e12  # 0.51316512
# Prefill compute efficiency: the 0.2 s less the weight read 1e9 / (MBU x
# 2e10) = 0.0999868 s, so 102,633,024,000 / 0.1000132 / 1e12 = 1.026195.
READ_S = 1e9 / (MBU * 2e10)
PREFILL_EFF = FLOPS / (0.2 - READ_S) / 1e12


def test_a_candidate_with_only_estimates(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(
        store, "measured", decode_tps=10, ttft_s=0.2, peak_bytes=15 * 10**8,
        kv_bytes=10**6, run_meta={"work": WORK, "hardware": LIMITS},
    )  # fmt: skip
    profile = _profile(
        max_memory_gb=100, min_quality={"arc-easy": 0.3}, estimate_dtype="bfloat16"
    )
    result, cal = _recommend(store, profile, estimates=True)
    assert MBU == pytest.approx(0.50006625) and MFU == pytest.approx(0.51316512)
    assert cal.efficiency.bandwidth == pytest.approx(MBU)
    assert READ_S == pytest.approx(0.0999868, rel=1e-5)
    assert cal.efficiency.flops == pytest.approx(PREFILL_EFF)
    assert cal.limits == LIMITS
    assert cal.overhead_bytes == pytest.approx(15e8 - 1e9 - 1e6)

    est = _by_model(result)["gemma-3-1b"]
    c = est.candidate
    assert c.kind == "estimated" and c.memory_bytes.basis == "estimated"
    a = arch.from_config(read_model("gemma-3-1b").config)
    kv = a.kv_bytes(tokens=128 + 9 - 1, batch=1, bytes_per_element=2)
    weights = a.params_total * 2
    assert c.memory_bytes.value == pytest.approx(weights + kv + cal.overhead_bytes)
    # Decode: the mean KV over the steps making tokens 2..9 (P + i - 1 tokens).
    mean_kv = (
        sum(a.kv_bytes(tokens=128 + i - 1, bytes_per_element=2) for i in range(2, 10))
        / 8
    )
    step = a.params_active_compute * 2 + mean_kv
    assert c.decode_tps.value == pytest.approx(MBU * 2e10 / step)
    # TTFT: the weight read at MBU x 2e10 B/s plus the prefill FLOPs at
    # bfloat16's 5e11 x the prefill compute efficiency.
    heads = sum(
        2 * x.q_heads * (x.head_dim + x.v_head_dim) * (
            128 * 129 // 2 if x.window is None or x.window >= 128
            else x.window * (x.window + 1) // 2 + (128 - x.window) * x.window
        )
        for x in a.layers
    )  # fmt: skip
    head = a.vocab_size * a.hidden_size
    flops = 2 * 128 * (a.params_active_compute - head) + heads + 2 * head
    read = a.params_active_compute * 2 / (MBU * 2e10)
    assert c.ttft_s.value == pytest.approx(read + flops / (PREFILL_EFF * 5e11))
    assert "this machine" in c.decode_tps.note and "50%" in c.decode_tps.note
    # No quality result: the quality constraint removes it, and says why.
    assert est.first_failure.name == "min_quality.arc-easy"
    assert "measured" in _by_model(result)  # measured and estimated side by side
    assert _by_model(result)["measured"].candidate.kind == "measured"


def test_estimates_without_measured_limits_leave_speed_unknown(tmp_path, monkeypatch):
    from llmarch import hardware

    monkeypatch.setattr(hardware, "cached", lambda device="cpu": None)
    store = store_at(tmp_path / "db.sqlite")
    result, cal = _recommend(store, _profile(min_decode_tps=1), estimates=True)
    assert cal.limits is None
    r = _by_model(result)["gemma-3-1b"]
    assert not r.candidate.decode_tps.known
    assert r.first_failure.name == "min_decode_tps"


def test_estimates_from_cached_limits_use_default_efficiencies(tmp_path, monkeypatch):
    from llmarch import hardware, roofline

    cached = hardware.DeviceLimits(
        "cpu", "Test CPU", 2e10, 3e10, {"float32": 1e12, "bfloat16": 5e11}, "test"
    )
    monkeypatch.setattr(hardware, "cached", lambda device="cpu": cached)
    store = store_at(tmp_path / "db.sqlite")
    result, cal = _recommend(store, _profile(), estimates=True)
    assert cal.efficiency.source == "defaults"
    a = arch.from_config(read_model("gemma-3-1b").config)
    mean_kv = (
        sum(a.kv_bytes(tokens=128 + i - 1, bytes_per_element=2) for i in range(2, 10))
        / 8
    )
    c = _by_model(result)["gemma-3-1b"].candidate
    assert c.decode_tps.value == pytest.approx(
        roofline.DEFAULT_BW_EFFICIENCY * 2e10 / (a.params_active_compute * 2 + mean_kv)
    )


# -- profiles -------------------------------------------------------------------


def test_builtin_profiles_load():
    names = set(builtin_paths())
    assert {
        "edge", "chatbot", "batch", "private-hosting", "prototyping", "reasoning",
    } <= names  # fmt: skip
    edge = get_profile("edge")
    assert edge.constraints.local_only and edge.constraints.open_weights
    assert edge.constraints.max_memory_gb == 4


def test_a_malformed_profile_names_every_bad_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\n"
        "colour: red\n"
        "constraints:\n"
        "  max_memory_gb: -1\n"
        "  ttft_percentile: p95\n"
        "  min_quality: {arc-easy: 55}\n"
        "  max_ram: 4\n"
        "weights: {quality: 0, decode_tps: 0}\n"
    )
    with pytest.raises(ConfigError) as info:
        get_profile(path=bad)
    msg = str(info.value)
    for field in (
        "colour: Extra inputs are not permitted",
        "constraints.max_memory_gb: Input should be greater than 0",
        "constraints.ttft_percentile: Input should be 'mean', 'median', 'p90' or 'p99'",
        "constraints.max_ram: Extra inputs are not permitted",
    ):
        assert field in msg


def test_profile_rules_across_fields(tmp_path):
    with pytest.raises(
        ConfigError, match="min_quality.arc-easy is 55; give a fraction"
    ):
        _profile(min_quality={"arc-easy": 55})
    with pytest.raises(ConfigError, match="at least one weight must be above 0"):
        _profile(weights={"quality": 0})
    with pytest.raises(ConfigError, match="weights.quality is above 0 but no task"):
        _profile(weights={"quality": 1})


def test_command_line_overrides_are_validated():
    edge = get_profile("edge")
    assert override(edge, max_memory_gb=8).constraints.max_memory_gb == 8
    assert override(edge, max_memory_gb=None) is edge
    with pytest.raises(ConfigError, match="max_memory_gb: Input should be greater"):
        override(edge, max_memory_gb=-2)


# -- the command ------------------------------------------------------------------


def _db(tmp_path):
    store = store_at(tmp_path / "db.sqlite")
    add_speed_run(store, "fast-big", decode_tps=40, ttft_s=0.1, peak_bytes=10 * GB)
    add_speed_run(store, "slow-small", decode_tps=10, ttft_s=0.3, peak_bytes=2 * GB)
    store.close()
    return str(tmp_path / "db.sqlite")


def test_recommend_command_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr("llmarch.candidates.hardware_key", lambda m, d: HERE)
    spec = tmp_path / "p.yaml"
    spec.write_text("name: mine\nweights: {decode_tps: 1}\n")
    db = _db(tmp_path)
    args = ["recommend", "--profile", str(spec), "--db", db, "--no-estimates"]
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [c["model"] for c in doc["candidates"]] == ["fast-big", "slow-small"]
    assert doc["candidates"][0]["figures"]["decode_tps"]["value"] == pytest.approx(40)

    # The override removes the fastest model.
    result = cli.invoke(app, [*args, "--max-memory-gb", "4", "--format", "md"])
    assert result.exit_code == 0, result.output
    md = result.stdout
    assert md.startswith("# Recommendation: mine")
    assert "| 1 | slow-small | 2.00 | 10.0 | 300 | – | 1.00 | ◆ | pass |" in md
    assert "It meets memory 2 GB <= 4 GB." in md
    # fast-big is on the speed / memory front, but over the limit.
    row = "| – | fast-big | 10.00 | 40.0 | 100 | – | – | ◆ | memory: 10 GB > 4 GB |"
    assert row in md


@pytest.mark.parametrize(
    "args, message",
    [
        (["--use-case", "mobile"], "unknown use case 'mobile'"),
        (["--profile", "nope.yaml"], "profile file nope.yaml does not exist"),
        (["--use-case", "edge", "--min-quality", "arc-easy"], "TASK=FRACTION"),
        (["--use-case", "edge", "--format", "pdf"], "--format must be table or md"),
        (["--use-case", "edge", "--max-memory-gb", "0"], "greater than 0"),
        ([], "choose a use case with --use-case"),
    ],
)
def test_bad_recommend_input_is_one_line(tmp_path, args, message):
    result = cli.invoke(app, ["recommend", *args, "--db", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_profiles_command_lists_and_shows():
    result = cli.invoke(app, ["profiles"])
    assert result.exit_code == 0
    for name in ("edge", "chatbot", "batch", "private-hosting", "prototyping"):
        assert name in result.output
    result = cli.invoke(app, ["profiles", "show", "edge", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["constraints"]["max_memory_gb"] == 4
    result = cli.invoke(app, ["profiles", "show", "nope"])
    assert result.exit_code == 1 and "unknown use case 'nope'" in result.output
