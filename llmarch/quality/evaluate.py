"""Running quality tasks on a backend: batches, per-item records, summaries.

Items are scored in chunks; each chunk's records are committed to the
results database before the next starts, so an interrupted run keeps them
and a rerun with the same settings skips them (``resume``).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from llmarch.backends.base import Backend
from llmarch.errors import BackendError, ConfigError
from llmarch.quality import scoring
from llmarch.quality.tasks import Task, load_task, parse_tasks

log = logging.getLogger(__name__)

DEFAULT_SEED = 1234
DEFAULT_EVAL_BATCH = 8
NEEDS = {
    "multiple_choice": "loglikelihood",
    "loglikelihood": "loglikelihood",
    "perplexity": "loglikelihood",
    "generate": "generate",
}


@dataclass
class EvalSettings:
    """What quality to measure and how."""

    tasks: list[str]
    limit: int | None = None
    shots: int = 0
    seed: int = DEFAULT_SEED
    batch_size: int = DEFAULT_EVAL_BATCH
    max_length: int | None = None
    max_new_tokens: int | None = None  # generation tasks; None: the task's own

    @classmethod
    def parse(
        cls,
        tasks: str,
        *,
        limit: int | None,
        shots: int,
        seed: int,
        batch_size: int,
        max_length: int | None = None,
        max_new_tokens: int | None = None,
    ) -> EvalSettings:
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be at least 1, not {limit}")
        if shots < 0:
            raise ConfigError(f"--shots must be 0 or more, not {shots}")
        if batch_size < 1:
            raise ConfigError(f"--eval-batch must be at least 1, not {batch_size}")
        if max_length is not None and max_length < 2:
            raise ConfigError(f"--max-length must be at least 2, not {max_length}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(
                f"--max-new-tokens must be at least 1, not {max_new_tokens}"
            )
        return cls(
            parse_tasks(tasks),
            limit,
            shots,
            seed,
            batch_size,
            max_length,
            max_new_tokens,
        )

    def key(self) -> dict[str, Any]:
        """The settings that decide the scores (batch size does not)."""
        out = asdict(self)
        out.pop("batch_size")
        return out


def check_backend(backend: Backend, tasks: Sequence[Task]) -> None:
    """Refuse, before any work, tasks the backend cannot score."""
    for task in tasks:
        need = NEEDS[task.kind]
        if need not in backend.QUALITY:
            other = (
                "generation tasks such as gsm8k"
                if "generate" in backend.QUALITY
                else "no quality tasks"
            )
            raise BackendError(
                f"{task.name} needs log-likelihoods, which the {backend.NAME} "
                f"backend cannot give; it can run {other}"
                if need == "loglikelihood"
                else f"{task.name} needs generation, which the {backend.NAME} "
                "backend cannot do"
            )


def _extract(task: Task, text: str) -> str | None:
    if task.extract == "final-number":
        return scoring.final_number(text)
    if task.extract.startswith("regex:"):
        found = re.findall(task.extract[6:], text)
        if not found:
            return None
        last = found[-1]
        return last if isinstance(last, str) else next((g for g in last if g), None)
    return text


def _is_correct(task: Task, predicted: str | None, answer: str) -> bool:
    if predicted is None:
        return False
    if task.extract == "final-number":
        return scoring.same_number(predicted, answer)
    return scoring.normalise_answer(predicted) == scoring.normalise_answer(answer)


def score_chunk(
    backend: Backend, task: Task, docs: Sequence[dict[str, Any]], s: EvalSettings
) -> list[dict[str, Any]]:
    """Score ``docs``; one record per document (see ``ResultStore.add_items``)."""
    prefixes = [task.prefix(d, s.shots, s.seed) for d in docs]
    if task.kind == "multiple_choice":
        requests = [
            (p + ctx, cont)
            for p, d in zip(prefixes, docs, strict=True)
            for ctx, cont in zip(d["contexts"], d["continuations"], strict=True)
        ]
        scores = backend.loglikelihood(
            requests, batch_size=s.batch_size, max_length=s.max_length
        )
        records, k = [], 0
        for p, d in zip(prefixes, docs, strict=True):
            n = len(d["contexts"])
            records.append(_mc_record(task, d, p, scores[k : k + n]))
            k += n
        return records
    if task.kind == "loglikelihood":
        requests = [
            (p + d["context"], d["continuation"])
            for p, d in zip(prefixes, docs, strict=True)
        ]
        scores = backend.loglikelihood(
            requests, batch_size=s.batch_size, max_length=s.max_length
        )
        return [
            _ll_record(d, p, sc)
            for p, d, sc in zip(prefixes, docs, scores, strict=True)
        ]
    if task.kind == "perplexity":
        texts = [d["text"] for d in docs]
        scores = backend.loglikelihood_rolling(
            texts, batch_size=s.batch_size, max_length=s.max_length
        )
        return [
            {
                "item_id": d["id"],
                "prompt": d["text"],
                "scores": {
                    "logprob": sc.logprob,
                    "tokens": sc.tokens,
                    "bytes": scoring.utf8_bytes(d["text"]),
                    "words": scoring.words(d["text"]),
                },
            }
            for d, sc in zip(docs, scores, strict=True)
        ]
    prompts = [p + d["query"] for p, d in zip(prefixes, docs, strict=True)]
    texts = backend.generate_text(
        prompts,
        max_new_tokens=s.max_new_tokens or task.max_new_tokens,
        stop=task.stop,
        batch_size=s.batch_size,
        max_length=s.max_length,
    )
    records = []
    for prompt, d, text in zip(prompts, docs, texts, strict=True):
        predicted = _extract(task, text)
        correct = _is_correct(task, predicted, d["answer"])
        records.append(
            {
                "item_id": d["id"],
                "prompt": prompt,
                "gold": d["answer"],
                "prediction": predicted,
                "credit": float(correct),
                "scores": {"generated": text},
            }
        )
    return records


def _mc_record(
    task: Task, doc: dict[str, Any], prefix: str, scores: Sequence[Any]
) -> dict[str, Any]:
    shared = len(set(doc["contexts"])) == 1
    record: dict[str, Any] = {
        "item_id": doc["id"],
        "prompt": prefix + doc["contexts"][0] if shared else prefix,
        "choices": doc["continuations"]
        if shared
        else [
            c + x for c, x in zip(doc["contexts"], doc["continuations"], strict=True)
        ],
        "gold": doc["gold"],
    }
    errors = [str(x) for x in scores if isinstance(x, scoring.ItemError)]
    if errors:
        record["error"] = errors[0]
        return record
    logprobs = [x.logprob for x in scores]
    acc = scoring.choose(logprobs, doc["gold"])
    if "acc_norm" in task.metrics:
        norm = scoring.choose(
            scoring.normalised(logprobs, doc["choice_texts"]), doc["gold"]
        )
        record.update(
            prediction_norm=norm.best, credit_norm=norm.credit, tied_norm=norm.tied
        )
    record.update(
        prediction=acc.best,
        credit=acc.credit,
        tied=acc.tied,
        scores={
            "logprobs": logprobs,
            "tokens": [x.tokens for x in scores],
            "greedy": [x.greedy for x in scores],
            "truncated": max(x.truncated for x in scores),
            "join": any(x.join for x in scores),
        },
    )
    return record


def _ll_record(doc: dict[str, Any], prefix: str, score: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "item_id": doc["id"],
        "prompt": prefix + doc["context"],
        "choices": [doc["continuation"]],
        "gold": doc["continuation"],
    }
    if isinstance(score, scoring.ItemError):
        record["error"] = str(score)
        return record
    record.update(
        prediction=score.greedy,
        credit=float(score.greedy),
        scores={
            "logprob": score.logprob,
            "tokens": score.tokens,
            "bytes": scoring.utf8_bytes(doc["continuation"]),
            "truncated": score.truncated,
            "join": score.join,
        },
    )
    return record


# -- summaries --------------------------------------------------------------


def summarize_task(
    task: str, kind: str, items: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Per-task figures from stored item records.

    acc, acc_norm, exact_match: the mean credit over scored items, with the
    standard error of that mean (sample standard deviation / √n). LAMBADA's
    perplexity is exp(−mean log-likelihood of the target word); bits per byte
    is −Σ log p / (ln 2 · Σ UTF-8 bytes). Failed items are counted, not scored.
    """
    scored = [x for x in items if not x.get("error")]
    row: dict[str, Any] = {
        "task": task,
        "kind": kind,
        "items": len(scored),
        "failed": len(items) - len(scored),
        "ties": sum(1 for x in scored if x.get("tied")),
        "seconds": sum(x.get("seconds") or 0.0 for x in items),
        "metrics": {},
    }
    metrics: dict[str, tuple[float | None, float | None]] = {}
    if kind in ("multiple_choice", "generate", "loglikelihood"):
        metrics["exact_match" if kind == "generate" else "acc"] = scoring.mean_stderr(
            [x["credit"] for x in scored]
        )
    if kind == "multiple_choice" and any(
        x.get("credit_norm") is not None for x in scored
    ):
        metrics["acc_norm"] = scoring.mean_stderr([x["credit_norm"] for x in scored])
        row["ties_norm"] = sum(1 for x in scored if x.get("tied_norm"))
    if kind == "loglikelihood" and scored:
        lps = [x["scores"]["logprob"] for x in scored]
        metrics["perplexity"] = (math.exp(-sum(lps) / len(lps)), None)
        n_bytes = sum(x["scores"]["bytes"] for x in scored)
        metrics["bits_per_byte"] = (-sum(lps) / (scoring.LN2 * n_bytes), None)
    if kind == "perplexity" and scored:
        figures = scoring.perplexity_figures(
            sum(x["scores"]["logprob"] for x in scored),
            tokens=sum(x["scores"]["tokens"] for x in scored),
            n_bytes=sum(x["scores"]["bytes"] for x in scored),
            n_words=sum(x["scores"]["words"] for x in scored),
        )
        metrics.update({k: (v, None) for k, v in figures.items()})
    row["metrics"] = {k: {"value": v, "stderr": se} for k, (v, se) in metrics.items()}
    return row


# -- the loop ---------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (task, items done now, total)


def load_tasks(settings: EvalSettings) -> list[Task]:
    return [load_task(name) for name in settings.tasks]


def run_tasks(
    backend: Backend,
    tasks: Sequence[Task],
    settings: EvalSettings,
    store: Any,
    run_id: str,
    *,
    on_progress: Progress | None = None,
) -> None:
    """Score every selected item not yet stored for this run."""
    chunk = max(settings.batch_size * 4, 8)
    for task in tasks:
        docs = task.select(settings.limit, settings.seed)
        done = store.item_ids(run_id, task.name)
        todo = [d for d in docs if d["id"] not in done]
        if on_progress:
            on_progress(task.name, len(docs) - len(todo), len(docs))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            t = time.perf_counter()
            records = score_chunk(backend, task, part, settings)
            seconds = (time.perf_counter() - t) / len(records)
            store.add_items(run_id, task.name, task.kind, records, seconds=seconds)
            if on_progress:
                on_progress(task.name, len(part), len(docs))


def summaries(store: Any, run_id: str) -> list[dict[str, Any]]:
    """One summary per task stored for the run, in the order first scored."""
    return [
        summarize_task(task, kind, store.items(run_id, task))
        for task, kind in store.item_tasks(run_id)
    ]
