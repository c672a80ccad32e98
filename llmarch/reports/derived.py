"""Figures a report derives rather than reads: KV-cache curves and the front.

The KV-cache curves come from each model's config through ``llmarch.arch``
(the arithmetic the bench checks its measured cache against); the quality /
speed points and their Pareto front come from the recommender
(``llmarch.candidates.gather`` and ``llmarch.recommend.recommend``) run over
the report's runs only.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from llmarch import arch
from llmarch.candidates import QUALITY_METRICS, gather, hardware_key
from llmarch.errors import LlmarchError
from llmarch.profiles import Profile, parse_profile
from llmarch.recommend import recommend
from llmarch.reports.aggregate import RunData

log = logging.getLogger(__name__)

# The cache is drawn and tabulated at 16-bit elements (bfloat16 / float16),
# how models are usually served, whatever dtype the runs used.
KV_BYTES_PER_ELEMENT = 2
KV_TABLE_TOKENS = (1024, 4096, 32768)
# Where a curve ends when a config states no context length.
KV_DEFAULT_CONTEXT = 32768


@dataclass
class KvModel:
    """One model's KV-cache arithmetic, read from its config."""

    model: str
    attention: str
    layout: str
    context_length: int | None
    per_token_bytes: int
    architecture: arch.Architecture

    @property
    def max_tokens(self) -> int:
        return self.context_length or KV_DEFAULT_CONTEXT

    def bytes_at(self, tokens: int) -> int | None:
        """KV bytes after ``tokens`` tokens, batch 1; None beyond the context."""
        if self.context_length and tokens > self.context_length:
            return None
        return self.architecture.kv_bytes(
            tokens=tokens, batch=1, bytes_per_element=KV_BYTES_PER_ELEMENT
        )


def _specs(data: list[RunData], extra: list[str]) -> list[tuple[str, list[str]]]:
    """(model name, what to read its config from) in first-seen order."""
    out: dict[str, list[str]] = {}
    for d in data:
        spec = ((d.run.get("metadata") or {}).get("spec")) or None
        names = [d.run["model"]] + ([spec] if spec and spec != d.run["model"] else [])
        out.setdefault(d.run["model"], names)
    for name in extra:
        out.setdefault(name, [name])
    return list(out.items())


def kv_models(
    data: list[RunData], extra: list[str] | None = None
) -> tuple[list[KvModel], list[tuple[str, str]]]:
    """The KV arithmetic of every model in the runs (and ``extra`` ids).

    Returns the models read and, for the others, (model, why not).
    """
    from llmarch.inspect import read_model

    found, skipped = [], []
    for model, specs in _specs(data, extra or []):
        reason = ""
        for spec in specs:
            try:
                a = arch.from_config(read_model(spec).config)
            except LlmarchError as exc:
                reason = str(exc).split(". ")[0]
                continue
            found.append(
                KvModel(
                    model=model,
                    attention=a.attention_kind(),
                    layout=a.window_layout(),
                    context_length=a.context_length,
                    per_token_bytes=a.kv_bytes_per_token(
                        bytes_per_element=KV_BYTES_PER_ELEMENT
                    ),
                    architecture=a,
                )
            )
            break
        else:
            skipped.append((model, reason))
    return found, skipped


# -- the quality / speed front ------------------------------------------------


@dataclass
class ParetoPoint:
    """A (model, backend) as the recommender sees it."""

    model: str
    backend: str
    quality: float | None  # fraction
    quality_se: float | None
    decode_tps: float | None
    memory_bytes: float | None
    front: bool


@dataclass
class ParetoData:
    """The recommender's candidates over the report's runs."""

    profile: Profile
    points: list[ParetoPoint]
    note: str  # how the profile was chosen


class _Subset:
    """A results store that only shows some of its runs to the recommender."""

    def __init__(self, store: Any, run_ids: set[str]) -> None:
        self._store, self._ids = store, run_ids

    def runs(self) -> list[dict[str, Any]]:
        return [r for r in self._store.runs() if r["run_id"] in self._ids]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _task_metrics(d: RunData) -> set[str]:
    return {
        q["task"] for q in d.quality if any(m in q["metrics"] for m in QUALITY_METRICS)
    }


def report_profile(data: list[RunData]) -> tuple[Profile, str]:
    """A profile for the front: the runs' common tasks and commonest setting.

    Quality tasks: those every model with quality results scored (acc,
    acc_norm or exact_match); if they share none, the task most models
    scored. Workload: the setting (prompt tokens, new tokens, parallel
    sequences) that most models measured, the smaller batch, then the
    shorter prompt winning ties.
    """
    tasks_by_model: dict[str, set[str]] = {}
    order: list[str] = []
    settings: dict[str, set[tuple[int, int, int]]] = {}
    for d in data:
        tasks = _task_metrics(d)
        tasks_by_model.setdefault(d.run["model"], set()).update(tasks)
        order += [q["task"] for q in d.quality if q["task"] in tasks]
        for r in d.rows:
            parallel = int(r.get("batch") or 1) * int(r.get("concurrency") or 1)
            key = (int(r["prompt_tokens"]), int(r["new_tokens"]), parallel)
            settings.setdefault(d.run["model"], set()).add(key)
    scored = [t for t in tasks_by_model.values() if t]
    chosen: list[str] = []
    if scored:
        common = set.intersection(*scored)
        if common:
            chosen = [t for t in dict.fromkeys(order) if t in common]
        else:
            counts = Counter(t for s in scored for t in s)
            best = max(counts.values())
            chosen = [next(t for t in dict.fromkeys(order) if counts[t] == best)]
    counts = Counter(k for s in settings.values() for k in s)
    workload = {"prompt_tokens": 512, "new_tokens": 128, "batch": 1}
    if counts:
        p, n, b = min(counts, key=lambda k: (-counts[k], k[2], k[0], k[1]))
        workload = {"prompt_tokens": p, "new_tokens": n, "batch": b}
    profile = parse_profile(
        {
            "name": "report",
            "description": "built from the report's runs",
            "workload": workload,
            "weights": {"decode_tps": 1.0, "quality": 1.0 if chosen else 0.0},
            "quality_tasks": chosen,
        },
        "the report's profile",
    )
    note = (
        f"quality: {'mean of ' + ', '.join(chosen) if chosen else 'no task scored'}; "
        "speed at "
        f"P={workload['prompt_tokens']}, N={workload['new_tokens']}, "
        f"B={workload['batch']} (or the nearest setting measured)"
    )
    return profile, note


def pareto(
    store: Any, data: list[RunData], profile: Profile | None = None
) -> ParetoData:
    """The recommender's figures and front for the report's runs only.

    Speed figures prefer runs on the hardware of the latest run in the
    report, so the figures do not depend on where the report is made.
    """
    if profile is None:
        profile, note = report_profile(data)
    else:
        note = f"profile {profile.name}"
    latest = max(data, key=lambda d: (d.run["started_at"], d.run_id))
    here = hardware_key(
        (latest.run.get("metadata") or {}).get("machine"), latest.run.get("device")
    )
    subset = _Subset(store, {d.run_id for d in data})
    candidates, _ = gather(subset, profile, here=here, estimates=False)
    result = recommend(candidates, profile)
    points = [
        ParetoPoint(
            model=r.candidate.model,
            backend=r.candidate.backend,
            quality=r.quality.value,
            quality_se=r.quality.spread,
            decode_tps=r.candidate.decode_tps.value,
            memory_bytes=r.candidate.memory_bytes.value
            if r.candidate.memory_bytes.basis != "n/a"
            else None,
            front=r.pareto,
        )
        for r in result["ranked"]
    ]
    points.sort(key=lambda p: (p.model, p.backend))
    return ParetoData(profile, points, note)
