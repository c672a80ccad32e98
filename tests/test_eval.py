"""Quality runs through the runner with a scripted backend: figures, ties,
per-item records, reports, resume after an interrupt, capability checks."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from llmarch.backends.base import Backend, LoadInfo
from llmarch.cli import app
from llmarch.errors import BackendError
from llmarch.quality.evaluate import EvalSettings
from llmarch.quality.scoring import TokenScore
from llmarch.runner import BenchRequest, run_bench
from llmarch.store import ResultStore

cli = CliRunner()

# Each choice text scores a fixed log-likelihood, so every figure below can be
# worked out by hand. "tie" scores exactly what "good" scores.
LOGPROB = {" good": -1.0, " bad": -2.0, " tie": -1.0}


class ScriptedBackend(Backend):
    NAME = "scripted"
    QUALITY = frozenset({"loglikelihood", "generate"})

    def __init__(self, *, interrupt_at: int | None = None) -> None:
        self.device, self.dtype = "cpu", "float32"
        self.scored: list[tuple[str, str]] = []
        self.calls = 0
        self.interrupt_at = interrupt_at

    def load(self) -> LoadInfo:
        return LoadInfo(load_s=0.1, weight_bytes=1, peak_memory_bytes=1)

    def generate(self, **kw):  # pragma: no cover - speed is not used here
        raise AssertionError("no speed runs in these tests")

    def loglikelihood(self, requests, *, batch_size, max_length=None):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.scored += list(requests)
        return [TokenScore(LOGPROB[cont], cont == " good", 1) for _, cont in requests]

    def generate_text(self, prompts, *, max_new_tokens, stop, batch_size, **kw):
        self.calls += 1
        return [" so the answer is 1,234." for _ in prompts]


def _task(tmp_path, rows, name="toy"):
    data = tmp_path / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nkind: multiple_choice\ndata: {data.name}\n"
        'query: "Q{n}:"\nchoices_field: choices\ngold_field: gold\n'
    )
    return spec


def _request(tmp_path, tasks, **kw):
    quality = EvalSettings.parse(
        tasks,
        limit=kw.pop("limit", None),
        shots=kw.pop("shots", 0),
        seed=1234,
        batch_size=kw.pop("batch_size", 8),
    )
    return BenchRequest(
        model="gemma-3-270m",
        prompt_tokens="1",
        new_tokens="1",
        batch="1",
        repeat=1,
        warmup=0,
        device="cpu",
        dtype="float32",
        force=False,
        db=tmp_path / "db.sqlite",
        out_dir=tmp_path / "reports",
        quality=quality,
        speed=kw.pop("speed", False),
        **kw,
    )


def _run(tmp_path, backend, tasks, **kw):
    return run_bench(
        _request(tmp_path, tasks, **kw),
        console=Console(quiet=True),
        backend_factory=lambda ref, req: backend,
    )


THREE = [
    {"n": 1, "choices": ["good", "bad"], "gold": 0},  # right: credit 1
    {"n": 2, "choices": ["bad", "good"], "gold": 0},  # wrong: credit 0
    {"n": 3, "choices": ["good", "tie"], "gold": 0},  # tie of 2 with gold: 1/2
]


def test_accuracy_ties_and_stderr_by_hand(tmp_path):
    spec = _task(tmp_path, THREE)
    outcome = _run(tmp_path, ScriptedBackend(), str(spec))
    assert outcome.status == "completed"
    (row,) = outcome.document["quality"]
    # acc = (1 + 0 + 0.5) / 3 = 0.5; sample variance ((.5² + .5² + 0) / 2) = 0.25;
    # standard error sqrt(0.25 / 3) = 0.288675.
    assert row["metrics"]["acc"]["value"] == pytest.approx(0.5)
    assert row["metrics"]["acc"]["stderr"] == pytest.approx(math.sqrt(0.25 / 3))
    assert row["ties"] == 1
    # acc_norm divides by characters: good -1/4, bad -2/3, tie -1/3, so item 3
    # is no longer a tie: credits 1, 0, 1.
    assert row["metrics"]["acc_norm"]["value"] == pytest.approx(2 / 3)
    assert row["ties_norm"] == 0
    assert row["items"] == 3 and row["failed"] == 0


def test_items_are_recorded_with_why(tmp_path):
    spec = _task(tmp_path, THREE)
    outcome = _run(tmp_path, ScriptedBackend(), str(spec))
    store = ResultStore(tmp_path / "db.sqlite")
    items = {i["item_id"]: i for i in store.items(outcome.run_id)}
    assert items["1"]["prompt"] == "Q2:"
    assert items["1"]["choices"] == [" bad", " good"]
    assert items["1"]["prediction"] == [1] and items["1"]["credit"] == 0.0
    assert items["1"]["scores"]["logprobs"] == [-2.0, -1.0]
    assert items["2"]["prediction"] == [0, 1] and items["2"]["tied"] == 1
    lines = outcome.reports["items"].read_text().splitlines()
    assert [json.loads(x)["item_id"] for x in lines] == ["0", "1", "2"]


def test_reports_hold_the_stored_figures(tmp_path):
    spec = _task(tmp_path, THREE)
    outcome = _run(tmp_path, ScriptedBackend(), str(spec))
    frame = pd.read_csv(outcome.reports["quality csv"])
    acc = frame[frame.metric == "acc"].iloc[0]
    assert acc.value == pytest.approx(0.5)
    assert acc.stderr == pytest.approx(math.sqrt(0.25 / 3))
    assert acc["ties"] == 1 and acc["items"] == 3
    md = outcome.reports["markdown"].read_text()
    # The Markdown shows percentages: 50.0 ± 28.9.
    assert "| toy | acc % | 50.0 | 28.9 | 3 | 0 | 1 |" in md


def test_interrupted_run_resumes_without_rescoring(tmp_path):
    rows = [{"n": i, "choices": ["good", "bad"], "gold": i % 2} for i in range(20)]
    spec = _task(tmp_path, rows)
    # batch 1: chunks of 8 items; the second chunk's call is interrupted.
    first = ScriptedBackend(interrupt_at=2)
    out1 = _run(tmp_path, first, str(spec), batch_size=1)
    assert out1.status == "interrupted"
    assert len(first.scored) == 16  # 8 items x 2 choices
    store = ResultStore(tmp_path / "db.sqlite")
    assert len(store.items(out1.run_id)) == 8

    second = ScriptedBackend()
    out2 = _run(tmp_path, second, str(spec), batch_size=4)  # batch size may differ
    assert out2.resumed and out2.run_id == out1.run_id
    assert out2.status == "completed"
    assert len(second.scored) == 24  # only the 12 items left
    (row,) = out2.document["quality"]
    assert row["items"] == 20
    assert row["metrics"]["acc"]["value"] == pytest.approx(0.5)  # even n right

    # A finished run is not resumed; --no-resume starts afresh too.
    third = _run(tmp_path, ScriptedBackend(), str(spec))
    assert not third.resumed and third.run_id != out1.run_id


def test_other_settings_start_a_new_run(tmp_path):
    rows = [{"n": i, "choices": ["good", "bad"], "gold": 0} for i in range(12)]
    spec = _task(tmp_path, rows)
    out1 = _run(tmp_path, ScriptedBackend(interrupt_at=2), str(spec), batch_size=1)
    assert out1.status == "interrupted"
    out2 = _run(tmp_path, ScriptedBackend(), str(spec), limit=5)
    assert not out2.resumed
    out3 = _run(tmp_path, ScriptedBackend(), str(spec), resume=False)
    assert not out3.resumed


def test_generation_scoring_by_final_number(tmp_path):
    data = tmp_path / "g.jsonl"
    data.write_text(
        json.dumps({"q": "a", "a": "1234"}) + "\n" + json.dumps({"q": "b", "a": "7"})
    )
    spec = tmp_path / "g.yaml"
    spec.write_text(
        "name: g\nkind: generate\ndata: g.jsonl\nquery: '{q}'\nanswer_field: a\n"
        "extract: final-number\n"
    )
    outcome = _run(tmp_path, ScriptedBackend(), str(spec))
    (row,) = outcome.document["quality"]
    # " so the answer is 1,234." -> 1234: right for the first, wrong for 7.
    assert row["metrics"]["exact_match"]["value"] == pytest.approx(0.5)
    items = ResultStore(tmp_path / "db.sqlite").items(outcome.run_id)
    assert items[0]["prediction"] == "1234"


def test_backend_without_loglikelihoods_is_refused_before_work(tmp_path):
    class GenerateOnly(ScriptedBackend):
        NAME = "genonly"
        QUALITY = frozenset({"generate"})

    spec = _task(tmp_path, THREE)
    with pytest.raises(BackendError, match="needs log-likelihoods.*gsm8k"):
        _run(tmp_path, GenerateOnly(), str(spec))


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "--tasks", "nope"], "unknown task 'nope'"),
        (["eval", "--tasks", "arc-easy", "--limit", "0"], "--limit must be at least 1"),
        (["eval", "--tasks", "arc-easy", "--shots", "-1"], "--shots must be 0 or more"),
        (["eval", "--tasks", "mmlu-cooking"], "no MMLU subject 'cooking'"),
        (["bench", "--tasks", "a,a"], "lists a task more than once"),
        (["eval", "--tasks", "missing.yaml"], "does not exist"),
    ],
)
def test_bad_quality_input_gets_one_line(args, message):
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one wrapped line


def test_tasks_command_lists_builtins():
    result = cli.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    for name in ("arc-easy", "arc-challenge", "hellaswag", "piqa", "boolq"):
        assert name in data["tasks"]
    for name in ("winogrande", "mmlu", "lambada", "gsm8k"):
        assert name in data["tasks"]
    assert len(data["mmlu_subjects"]) == 57


class SpeedAndQuality(ScriptedBackend):
    """Canned speed samples (FakeBackend's) and scripted log-likelihoods."""

    def __init__(self, **kw):
        from tests.conftest import FakeBackend

        super().__init__(**kw)
        self.speed = FakeBackend()

    def generate(self, **kw):
        return self.speed.generate(**kw)


def test_bench_with_tasks_puts_quality_beside_speed(tmp_path):
    spec = _task(tmp_path, THREE)
    request = _request(tmp_path, str(spec), speed=True)
    request.prompt_tokens, request.new_tokens, request.repeat = "10", "5", 2
    backend = SpeedAndQuality()
    outcome = run_bench(
        request, console=Console(quiet=True), backend_factory=lambda r, q: backend
    )
    assert outcome.status == "completed"
    assert len(backend.speed.calls) == 2  # 2 repeats, no warm-up
    frame = pd.read_csv(outcome.reports["csv"])
    assert len(frame) == 1  # one speed setting...
    # ...with the quality figures as columns of the same row.
    assert frame.loc[0, "quality_toy_acc"] == pytest.approx(0.5)
    assert frame.loc[0, "quality_toy_acc_stderr"] == pytest.approx(math.sqrt(0.25 / 3))
    assert frame.loc[0, "ttft_s_median"] == pytest.approx(0.5)
    md = outcome.reports["markdown"].read_text()
    assert md.index("## Summary") < md.index("## Quality")


def test_resumed_bench_keeps_its_finished_speed_sweep(tmp_path):
    rows = [{"n": i, "choices": ["good", "bad"], "gold": 0} for i in range(12)]
    spec = _task(tmp_path, rows)

    def request():
        r = _request(tmp_path, str(spec), speed=True, batch_size=1)
        r.prompt_tokens, r.new_tokens, r.repeat = "10", "5", 2
        return r

    first = SpeedAndQuality(interrupt_at=2)
    out1 = run_bench(
        request(), console=Console(quiet=True), backend_factory=lambda r, q: first
    )
    assert out1.status == "interrupted" and len(first.speed.calls) == 2
    second = SpeedAndQuality()
    out2 = run_bench(
        request(), console=Console(quiet=True), backend_factory=lambda r, q: second
    )
    assert out2.resumed and out2.status == "completed"
    assert second.speed.calls == []  # the finished sweep is kept, not redone
    assert len(second.scored) == 8  # 4 items left x 2 choices
    assert len(out2.document["samples"]) == 2
