"""Hardware limits, MBU / MFU and predictions on hand-worked cases."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmarch import arch, hardware, roofline
from llmarch.arch import LayerArch
from llmarch.cli import app
from llmarch.errors import ConfigError
from llmarch.inspect import read_model
from llmarch.roofline import Efficiency, Work, causal_pairs

cli = CliRunner()

FULL = LayerArch("full", None, q_heads=8, kv_heads=2, head_dim=64, v_head_dim=64)
SLIDING = LayerArch("sliding", 4, q_heads=8, kv_heads=2, head_dim=64, v_head_dim=64)
# Two layers, 2 KV heads x (64 + 64) = 256 elements per token each, 2 bytes;
# 500,000 parameters in 1 MB of weights, 100,000 of them the output head.
WORK = Work(
    layers=(FULL, SLIDING),
    params_total=500_000,
    params_active_compute=500_000,
    lm_head_params=100_000,
    weight_bytes=1_000_000,
    kv_bytes_per_element=2,
)
LIMITS = {"read_bandwidth": 1e8, "matmul_flops": {"float32": 1e9}}


def test_causal_pairs():
    assert causal_pairs(0, None) == 0
    assert causal_pairs(5, None) == 15  # 1 + 2 + 3 + 4 + 5
    assert causal_pairs(5, 3) == 12  # 1 + 2 + 3 + 3 + 3
    assert causal_pairs(3, 3) == 6
    assert causal_pairs(6, 4) == 18  # 1 + 2 + 3 + 4 + 4 + 4


def test_kv_and_decode_step_bytes_count_windows():
    # KV(T) = 2 bytes x 256 x (T + min(T, 3)): the window keeps W - 1 = 3.
    assert WORK.kv_bytes(5) == 512 * (5 + 3) == 4096
    assert WORK.kv_bytes(2) == 512 * (2 + 2)
    # P=4, N=3: the steps making tokens 2 and 3 attend 5 and 6 tokens.
    assert WORK.decode_step_bytes(4, 3) == 1_000_000 + (4096 + 4608) / 2
    assert WORK.decode_step_bytes(4, 3, batch=2) == 1_000_000 + 4096 + 4608
    assert WORK.decode_step_bytes(4, 1) is None  # no decode step


def test_mbu_by_hand():
    # 1,004,352 bytes a step x 50 steps/s / 1e8 B/s
    got = roofline.mbu(
        WORK, prompt_tokens=4, new_tokens=3, batch=1, decode_tps=50, bandwidth=1e8
    )
    assert got == pytest.approx(0.5021760)
    # Batch 2 at 80 tokens/s is 40 steps/s of 1,008,704 bytes.
    got = roofline.mbu(
        WORK, prompt_tokens=4, new_tokens=3, batch=2, decode_tps=80, bandwidth=1e8
    )
    assert got == pytest.approx(0.40348160)
    assert (
        roofline.mbu(
            WORK, prompt_tokens=4, new_tokens=1, batch=1, decode_tps=50, bandwidth=1e8
        )
        is None
    )


def test_prefill_flops_and_mfu_by_hand():
    # decoder 2*4*400,000 + attention 2 layers x 2*8*128*10 pairs + head 2*1e5
    assert WORK.attention_flops(4) == 2 * 2048 * 10
    assert WORK.prefill_flops(4) == 3_200_000 + 40_960 + 200_000
    # P=6: full layer 21 pairs, window-4 layer 18 pairs.
    assert WORK.attention_flops(6) == 2048 * (21 + 18)
    assert WORK.prefill_flops(4, batch=2) == 2 * 3_440_960
    got = roofline.mfu(WORK, prompt_tokens=4, batch=1, ttft_s=0.01, flops=1e9)
    assert got == pytest.approx(0.344096)


def test_moe_reads_only_active_weights():
    moe = Work((FULL,), 1000, 250, 10, 4000, 2)
    assert moe.active_weight_bytes == 1000
    assert moe.decode_step_bytes(0, 2) == 1000 + 2 * 256 * 1


def test_work_round_trip_groups_layers():
    w = Work((FULL, FULL, FULL, SLIDING), 10, 10, 1, 40, 2)
    d = w.as_dict()
    assert [g["count"] for g in d["layers"]] == [3, 1]
    assert Work.from_dict(json.loads(json.dumps(d))) == w


def test_add_utilisation_from_a_run():
    run = {"dtype": "float32", "metadata": {"work": WORK.as_dict(), "hardware": LIMITS}}
    rows = [
        {
            **{"prompt_tokens": 4, "new_tokens": 3, "batch": 1},
            **{"decode_tps_median": 50.0, "ttft_s_median": 0.01},
        },
        {"prompt_tokens": 4, "new_tokens": 1, "batch": 1, "ttft_s_median": None},
    ]
    roofline.add_utilisation(rows, run)
    assert rows[0]["mbu"] == pytest.approx(0.5021760)
    assert rows[0]["mfu"] == pytest.approx(0.344096)
    assert rows[1]["mbu"] is None and rows[1]["mfu"] is None
    # An API run stores no work: nothing is made up.
    bare = [dict(rows[0])]
    roofline.add_utilisation(bare, {"dtype": "float32", "metadata": {}})
    assert bare[0]["mbu"] is None and bare[0]["mfu"] is None


def test_prefill_efficiency_and_prediction_invert_the_measurement():
    # TTFT 0.05 s with MBU 0.502176: the weight read takes 1 MB / (0.502176 x
    # 1e8 B/s) = 0.0199134 s, the matmuls the other 0.0300866 s, so the
    # prefill compute efficiency is 3,440,960 / 0.0300866 / 1e9 = 0.114368.
    read_s = 1_000_000 / (0.5021760 * 1e8)
    got = roofline.prefill_efficiency(
        WORK, prompt_tokens=4, batch=1, ttft_s=0.05, flops=1e9,
        bw_efficiency=0.5021760, bandwidth=1e8,
    )  # fmt: skip
    assert read_s == pytest.approx(0.0199134, rel=1e-5)
    assert got == pytest.approx(3_440_960 / (0.05 - read_s) / 1e9)
    assert got == pytest.approx(0.114368, rel=1e-5)
    # A TTFT shorter than the weight read leaves no compute time: unknown.
    assert (
        roofline.prefill_efficiency(
            WORK,
            prompt_tokens=4,
            batch=1,
            ttft_s=0.01,
            flops=1e9,
            bw_efficiency=0.5021760,
            bandwidth=1e8,
        )  # fmt: skip
        is None
    )
    # With the efficiencies a run reached, the prediction gives it back.
    eff = Efficiency(bandwidth=0.5021760, flops=got)
    p = roofline.predict(
        WORK, prompt_tokens=4, new_tokens=3, batch=1, bandwidth=1e8, flops=1e9, eff=eff
    )
    assert p.decode_tps == pytest.approx(50.0)
    assert p.ttft_s == pytest.approx(0.05)


def test_efficiency_is_the_median_of_measured_rows():
    rows = [
        {"mbu": 0.2, "prefill_eff": 0.1},
        {"mbu": 0.4, "prefill_eff": None},
        {"mbu": 0.9},
    ]
    eff = roofline.efficiency_from_rows(rows)
    assert eff.bandwidth == pytest.approx(0.4) and eff.flops == pytest.approx(0.1)
    assert roofline.efficiency_from_rows([]).source == "defaults"


# -- hardware -------------------------------------------------------------------


def test_measure_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMARCH_CACHE_DIR", str(tmp_path))
    real = hardware.measure
    calls = []

    def small(device="cpu", **kw):
        calls.append(device)
        return real(device, bandwidth_bytes=8 * 2**20, matmul_n=64, trials=2)

    monkeypatch.setattr(hardware, "measure", small)
    found = hardware.limits("cpu")
    assert found.read_bandwidth > 0 and found.copy_bandwidth > 0
    assert set(found.matmul_flops) == {"float32", "bfloat16"}
    assert "8 MiB" in found.method and "64x64" in found.method
    stored = json.loads((tmp_path / "hardware.json").read_text())
    assert list(stored) == [hardware.machine_key("cpu")]
    again = hardware.limits("cpu")  # from the cache: no second measurement
    assert calls == ["cpu"] and again == found
    hardware.limits("cpu", refresh=True)
    assert calls == ["cpu", "cpu"]


def test_known_devices():
    h100 = hardware.known_device("H100 SXM")
    assert h100.bandwidth == 3.35e12 and h100.matmul_flops["bfloat16"] == 989e12
    assert hardware.known_device("t4").matmul_flops["float16"] == 65e12
    with pytest.raises(ConfigError, match="unknown device 'h900'.*h100-sxm"):
        hardware.known_device("h900")


def _fixed_limits(monkeypatch):
    fixed = hardware.DeviceLimits(
        "cpu", "Test CPU", 1e10, 2e10, {"float32": 1e11, "bfloat16": 2e11}, "test"
    )
    monkeypatch.setattr(hardware, "cached", lambda device="cpu": fixed)
    monkeypatch.setattr(hardware, "limits", lambda device="cpu", refresh=False: fixed)
    return fixed


def test_hardware_command(monkeypatch):
    _fixed_limits(monkeypatch)
    result = cli.invoke(app, ["hardware", "--json"])
    assert result.exit_code == 0, result.output
    (dev,) = json.loads(result.stdout)["devices"]
    assert dev["read_bandwidth"] == 1e10 and dev["matmul_flops"]["float32"] == 1e11
    table = cli.invoke(app, ["hardware"])
    assert "10.0 GB/s" in table.stdout and "100 GFLOP/s" in table.stdout
    bad = cli.invoke(app, ["hardware", "--device", "tpu"])
    assert bad.exit_code == 1 and "--device must be" in bad.output


def test_inspect_predicts_for_a_named_device(tmp_path):
    result = cli.invoke(
        app,
        [
            *("inspect", "gemma-3-1b", "--device-name", "h100-sxm", "--json"),
            *("--prompt-tokens", "512", "--new-tokens", "128"),
            *("--db", str(tmp_path / "none.sqlite")),
        ],
    )
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)
    p = r["prediction"]
    a = arch.from_config(read_model("gemma-3-1b").config)
    # bfloat16 weights and KV (the defaults), mean KV over tokens 2..128.
    mean_kv = (
        sum(a.kv_bytes(tokens=512 + i - 1, bytes_per_element=2) for i in range(2, 129))
        / 127
    )
    step = a.params_active_compute * 2 + mean_kv
    assert p["decode_step_bytes"] == pytest.approx(step)
    assert p["decode_tps"] == pytest.approx(0.6 * 3.35e12 / step)
    assert p["where"] == "NVIDIA H100 SXM 80GB" and "defaults" in p["basis"]
    bad = cli.invoke(app, ["inspect", "gemma-3-1b", "--device-name", "h900"])
    assert bad.exit_code == 1 and "unknown device 'h900'" in bad.output
    assert "Traceback" not in bad.output


def test_bench_rows_gain_mbu_and_mfu(tiny_gemma3, tmp_path, monkeypatch):
    limits = _fixed_limits(monkeypatch)
    db = tmp_path / "r.sqlite"
    result = cli.invoke(
        app,
        [
            *("bench", str(tiny_gemma3), "--prompt-tokens", "8,24"),
            *("--new-tokens", "4", "--repeat", "2", "--warmup", "0"),
            *("--device", "cpu", "--dtype", "float32", "--db", str(db), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    meta = doc["run"]["metadata"]
    assert meta["hardware"]["read_bandwidth"] == 1e10
    work = Work.from_dict(meta["work"])
    a = arch.from_config(read_model(str(tiny_gemma3)).config)
    assert work.weight_bytes == doc["run"]["load"]["weight_bytes"]
    # float32 parameters plus a few buffers (rotary tables, embedding scale)
    assert 0 <= work.weight_bytes - a.params_total * 4 < 1e-3 * work.weight_bytes
    assert a.params_active_compute == a.params_total  # dense, tied embeddings
    for row in doc["summary"]:
        p = row["prompt_tokens"]
        # steps making tokens 2..4 attend P+1..P+3 tokens; windows included.
        kv = [a.kv_bytes(tokens=p + i - 1, bytes_per_element=4) for i in (2, 3, 4)]
        step = work.weight_bytes + sum(kv) / 3
        assert row["mbu"] == pytest.approx(
            step * row["decode_tps_median"] / limits.read_bandwidth
        )
        head = a.vocab_size * a.hidden_size
        attn = sum(
            2 * x.q_heads * (x.head_dim + x.v_head_dim) * causal_pairs(p, x.window)
            for x in a.layers
        )
        flops = 2 * p * (a.params_active_compute - head) + attn + 2 * head
        assert row["mfu"] == pytest.approx(flops / row["ttft_s_median"] / 1e11)
    table = cli.invoke(
        app,
        [
            *("bench", str(tiny_gemma3), "--prompt-tokens", "8", "--new-tokens", "4"),
            *("--repeat", "1", "--warmup", "0", "--device", "cpu", "--db", str(db)),
        ],
    )
    assert table.exit_code == 0, table.output
    assert "MBU" in table.stdout and "MFU" in table.stdout, table.stdout
