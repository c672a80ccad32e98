"""Tasks: the built-in ones read the real packaged data in lm-evaluation-
harness's formats; user tasks from YAML over JSONL or CSV; seeded subsets and
few-shot draws; each bad field of a task file named."""

from __future__ import annotations

import json
import sys

import pytest

from llmarch.errors import ConfigError
from llmarch.quality.tasks import load_task, mmlu_subjects


@pytest.mark.parametrize(
    "name, items",
    [
        ("arc-easy", 570),
        ("arc-challenge", 299),
        ("piqa", 1838),
        ("boolq", 3270),
        ("winogrande", 1267),
        ("hellaswag", 10042),
        ("lambada", 5153),
        ("gsm8k", 1319),
        ("mmlu-anatomy", 135),
    ],
)
def test_builtin_tasks_read_the_whole_split(name, items):
    task = load_task(name)
    assert len(task.docs) == items
    assert len({d["id"] for d in task.docs}) == items  # ids are unique


def test_mmlu_has_57_subjects_and_14042_questions():
    assert len(mmlu_subjects()) == 57
    assert len(load_task("mmlu").docs) == 14042


def test_arc_item_in_the_harness_format():
    doc = load_task("arc-easy").docs[0]
    assert doc["id"] == "MCAS_2000_4_6"
    assert doc["contexts"][0] == (
        "Question: Which technology was developed most recently?\nAnswer:"
    )
    assert doc["continuations"] == [
        " cellular telephone",
        " television",
        " refrigerator",
        " airplane",
    ]
    assert doc["gold"] == 0


def test_winogrande_scores_the_rest_under_each_option():
    doc = load_task("winogrande").docs[0]
    assert doc["contexts"] == [
        "Sarah was a much better surgeon than Maria so Sarah",
        "Sarah was a much better surgeon than Maria so Maria",
    ]
    assert doc["continuations"] == [" always got the easier cases."] * 2
    assert doc["gold"] == 1


def test_mmlu_prompt_and_fewshot_from_dev():
    task = load_task("mmlu-anatomy")
    doc = task.docs[0]
    assert doc["contexts"][0].endswith(
        "\nD. paralysis of the facial muscles, loss "
        "of taste, lacrimation and decreased "
        "salivation.\nAnswer:"
    )
    assert doc["continuations"] == [" A", " B", " C", " D"]
    prefix = task.prefix(doc, 2, 1234)
    assert prefix.startswith(
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
    )
    # Two solved dev questions, each ending in its answer letter.
    assert prefix.count("\nAnswer: ") == 2 and prefix.endswith("\n\n")
    assert task.prefix(doc, 2, 1234) == prefix  # the same seed, the same shots
    with pytest.raises(ConfigError, match="only 5 few-shot examples"):
        task.prefix(doc, 6, 1234)


def test_gsm8k_gold_is_the_number_after_the_marks():
    doc = load_task("gsm8k").docs[0]
    assert doc["answer"] == "18"
    assert doc["query"].startswith("Question: Janet") and doc["query"].endswith(
        "\nAnswer:"
    )


def test_subsets_are_seeded_and_fewshot_never_shows_the_item():
    task = load_task("arc-easy")
    a, b = task.select(50, 1234), task.select(50, 1234)
    assert [d["id"] for d in a] == [d["id"] for d in b]
    assert [d["id"] for d in task.select(50, 99)] != [d["id"] for d in a]
    assert len(task.select(None, 1)) == 570 and len(task.select(10_000, 1)) == 570
    doc = a[0]
    question = doc["contexts"][0]
    for seed in range(20):
        assert question not in task.prefix(doc, 3, seed)


# -- user tasks ---------------------------------------------------------------


def _write(tmp_path, yaml_text, data_name=None, data=None):
    if data_name:
        (tmp_path / data_name).write_text(data)
    spec = tmp_path / "task.yaml"
    spec.write_text(yaml_text)
    return str(spec)


def test_a_user_task_over_jsonl(tmp_path):
    rows = [
        {"country": "France", "options": ["Paris", "Rome"], "answer": "Paris"},
        {"country": "Italy", "options": ["Paris", "Rome"], "answer": 1},
        {"country": "Spain", "options": ["Madrid", "Rome"], "answer": "A"},
    ]
    spec = _write(
        tmp_path,
        "name: capitals\nkind: multiple_choice\ndata: capitals.jsonl\n"
        'query: "Q: capital of {country}?\\nA:"\n'
        "choices_field: options\ngold_field: answer\n",
        "capitals.jsonl",
        "\n".join(json.dumps(r) for r in rows),
    )
    task = load_task(spec)
    assert task.name == "capitals" and task.metrics == ("acc", "acc_norm")
    assert [d["gold"] for d in task.docs] == [0, 1, 0]  # text, index, letter
    assert task.docs[0]["contexts"][0] == "Q: capital of France?\nA:"
    assert task.docs[0]["continuations"] == [" Paris", " Rome"]


def test_a_user_task_over_csv(tmp_path):
    spec = _write(
        tmp_path,
        "name: yn\nkind: multiple_choice\ndata: yn.csv\nquery: '{q}'\n"
        "choices: [no, yes]\ngold_field: label\n",
        "yn.csv",
        "q,label\nIs ice cold?,1\nIs fire cold?,0\n",
    )
    task = load_task(spec)
    assert [d["gold"] for d in task.docs] == [1, 0]
    assert task.docs[1]["contexts"][0] == "Is fire cold?"


def test_a_csv_choices_cell_split_on_bars(tmp_path):
    spec = _write(
        tmp_path,
        "name: c\nkind: multiple_choice\ndata: c.csv\nquery: '{q}'\n"
        "choices_field: c\ngold_field: g\n",
        "c.csv",
        "q,c,g\nwhich?,red|green|blue,C\n",
    )
    (doc,) = load_task(spec).docs
    assert doc["choice_texts"] == ["red", "green", "blue"] and doc["gold"] == 2


def test_every_bad_field_is_named(tmp_path):
    spec = _write(
        tmp_path,
        "name: bad\nkind: multiple_choise\ndata: x.jsonl\nquery: 3\ncolour: red\n",
    )
    with pytest.raises(ConfigError) as info:
        load_task(spec)
    message = str(info.value)
    assert "kind:" in message and "colour:" in message
    assert "Extra inputs are not permitted" in message


def test_missing_fields_for_the_kind_are_named(tmp_path):
    spec = _write(tmp_path, "name: g\nkind: generate\ndata: x.jsonl\n")
    with pytest.raises(ConfigError, match="needs query, answer_field"):
        load_task(spec)


@pytest.mark.parametrize(
    "data, message",
    [
        ('{"q": "a"}\nnot json\n', "line 2 is not JSON"),
        ('{"x": "a", "g": 0}\n', "uses {q} but the data has no such field"),
        ('{"q": "a", "g": 5}\n', "out of range"),
    ],
)
def test_bad_data_rows_are_named(tmp_path, data, message):
    spec = _write(
        tmp_path,
        "name: t\nkind: multiple_choice\ndata: t.jsonl\nquery: '{q}'\n"
        "choices: [a, b]\ngold_field: g\n",
        "t.jsonl",
        data,
    )
    with pytest.raises(ConfigError, match=message):
        load_task(spec)


def test_a_hub_dataset_offline_says_to_export_it(tmp_path, monkeypatch):
    # Without the datasets package (as here) or without network access, the
    # task stops with a message naming the way out.
    monkeypatch.setitem(sys.modules, "datasets", None)
    spec = _write(
        tmp_path,
        "name: h\nkind: generate\nhf_dataset: {path: org/name, split: test}\n"
        "query: '{q}'\nanswer_field: a\n",
    )
    with pytest.raises(ConfigError, match="export the split to JSONL"):
        load_task(spec)


def test_a_hub_dataset_that_fails_to_load_says_why(tmp_path, monkeypatch):
    class Offline:
        @staticmethod
        def load_dataset(*args, **kwargs):
            raise ConnectionError("Couldn't reach 'org/name' on the Hub (offline)")

    monkeypatch.setitem(sys.modules, "datasets", Offline)
    spec = _write(
        tmp_path,
        "name: h\nkind: generate\nhf_dataset: {path: org/name}\n"
        "query: '{q}'\nanswer_field: a\n",
    )
    with pytest.raises(ConfigError, match="Couldn't reach.*export it to JSONL"):
        load_task(spec)
