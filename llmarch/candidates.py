"""Candidates for a recommendation: measured figures from the results
database, and estimates for catalog models that have none.

Every figure carries its basis (``measured``, ``estimated``, ``catalog``,
``n/a`` or ``unknown``) and a note saying where it came from, so a measured
figure is never silently mixed with an estimated one.

Which run a measured candidate's figures come from
    One candidate per (model, backend). Speed: the latest run measured on
    this machine (same CPU model and core count, or the same GPU) that has a
    setting at the profile's batch and prompt length; else the latest on this
    machine; else the latest anywhere, which is said. Within the run, the
    setting with the profile's batch (else the closest) and prompt length
    (else the closest) is read. Quality: per task, the run that scored the
    whole split (else the most items), latest first.

Estimates (catalog models without results)
    Weights at the profile's ``estimate_dtype``; KV cache at prompt + new
    tokens for the workload's batch (16-bit, float32 for float32 weights);
    memory = weights + KV + the runtime overhead seen on this machine (median
    of peak memory minus weights and KV over the measured local runs). Decode
    tokens/s and TTFT come from ``llmarch.predict``: this machine's measured
    bandwidth and FLOP/s times the efficiencies (MBU, MFU) its measured runs
    reached, or the documented defaults. Without measured limits for this
    machine (no ``llmarch hardware`` yet and no local run that stored them),
    speed is left unknown.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from llmarch import arch
from llmarch.catalog import load_catalog
from llmarch.errors import LlmarchError
from llmarch.predict import Basis, hardware_key, predicted, this_machine, work_for
from llmarch.profiles import Profile
from llmarch.quality.evaluate import summarize_task
from llmarch.report import summarize_samples

log = logging.getLogger(__name__)

LOCAL_BACKENDS = {"transformers", "llamacpp"}
QUALITY_METRICS = ("acc", "acc_norm", "exact_match")
DTYPE_BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0}
DTYPE_BYTES["4bit"] = 0.5


@dataclass
class Figure:
    """One value of a candidate, with where it came from."""

    value: float | None
    basis: str  # measured | estimated | catalog | n/a | unknown
    note: str = ""
    spread: float | None = None  # run-to-run std. dev. or standard error

    @property
    def known(self) -> bool:
        return self.value is not None


UNKNOWN = Figure(None, "unknown")


@dataclass
class Candidate:
    """A model as it would be deployed, with the figures the profile needs."""

    model: str
    backend: str
    kind: str  # measured | estimated
    local: bool
    open_weights: Figure
    context: Figure
    memory_bytes: Figure
    decode_tps: Figure
    ttft_s: Figure
    tpot_s: Figure
    cost_per_mtok: Figure
    quality: dict[str, Figure] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    speed_run: str | None = None
    choices: list[str] = field(default_factory=list)  # how figures were chosen
    device: str | None = None
    dtype: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model} ({self.backend})"


def is_local_url(url: str | None) -> bool:
    """A server on this machine or a private network counts as self-hosted."""
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private


def quality_key(key: str) -> tuple[str, str | None]:
    """``"arc-easy:acc_norm"`` -> ``("arc-easy", "acc_norm")``."""
    task, _, metric = key.partition(":")
    if metric and metric not in QUALITY_METRICS:
        raise LlmarchError(
            f"quality figure {key!r}: the metric must be one of "
            f"{', '.join(QUALITY_METRICS)}"
        )
    return task, metric or None


# -- measured candidates -----------------------------------------------------


def _parallel(row: dict[str, Any]) -> int:
    return int(row.get("batch") or 1) * int(row.get("concurrency") or 1)


def pick_row(
    rows: list[dict[str, Any]], profile: Profile
) -> tuple[dict[str, Any] | None, bool]:
    """The setting closest to the workload; True when it matches exactly."""
    rows = [r for r in rows if r.get("n")]
    if not rows:
        return None, False
    w = profile.workload
    best = min(
        rows,
        key=lambda r: (
            abs(_parallel(r) - w.batch),
            abs(int(r["prompt_tokens"]) - w.prompt_tokens),
            -int(r["prompt_tokens"]),
        ),
    )
    exact = _parallel(best) == w.batch and best["prompt_tokens"] == w.prompt_tokens
    return best, exact


def _speed_run(
    runs: list[dict[str, Any]], store: Any, profile: Profile, here: str
) -> tuple[dict[str, Any], dict[str, Any], bool, str] | None:
    """(run, row, on this machine, why) for the run whose speed is used."""
    options = []
    for run in runs:
        rows = summarize_samples(store.samples(run["run_id"]))
        row, exact = pick_row(rows, profile)
        if row is None:
            continue
        machine = (run.get("metadata") or {}).get("machine")
        remote = run["backend"] not in LOCAL_BACKENDS and not is_local_url(
            ((run.get("metadata") or {}).get("model") or {}).get("base_url")
        )
        same = remote or hardware_key(machine, run.get("device")) == here
        options.append((same, exact, run["started_at"], run["run_id"], run, row))
    if not options:
        return None
    options.sort(key=lambda o: o[:4], reverse=True)
    same, exact, _, _, run, row = options[0]
    why = "latest run" + (" on this machine" if same else " (on other hardware)")
    if exact:
        why += " with the profile's batch and prompt length"
    if len(options) > 1:
        why += f", of {len(options)} with speed figures"
    return run, row, same, why


def _quality_figures(
    runs: list[dict[str, Any]], store: Any, keys: list[str]
) -> tuple[dict[str, Figure], list[str]]:
    figures: dict[str, Figure] = {}
    used = []
    for key in keys:
        task, metric = quality_key(key)
        found = []
        for run in runs:
            items = store.items(run["run_id"], task)
            if not items:
                continue
            summary = summarize_task(task, items[0]["kind"], items)
            limit = ((run.get("settings") or {}).get("quality") or {}).get("limit")
            found.append(
                (limit is None, summary["items"], run["started_at"], run, summary)
            )
        if not found:
            continue
        found.sort(key=lambda f: f[:3], reverse=True)
        full, n, _, run, summary = found[0]
        metrics = summary["metrics"]
        name = metric or next((m for m in QUALITY_METRICS if m in metrics), None)
        if name is None or name not in metrics:
            continue
        value = metrics[name]
        figures[key] = Figure(
            value["value"],
            "measured",
            f"{task} {name}, {n} items{'' if full else ' (a subset)'}, run "
            f"{run['run_id']}",
            value["stderr"],
        )
        used.append(run["run_id"])
    return figures, used


def _catalog_facts(model: str, run: dict[str, Any] | None) -> tuple[Figure, Figure]:
    entry = load_catalog().get(model)
    if entry is not None:
        ctx = (
            Figure(entry.context_length, "catalog", "catalog context length")
            if entry.context_length
            else UNKNOWN
        )
        return Figure(float(entry.open_weights), "catalog", entry.license), ctx
    described = ((run or {}).get("metadata") or {}).get("model") or {}
    ctx_len = described.get("context_length")
    ctx = Figure(ctx_len, "measured", "model config") if ctx_len else UNKNOWN
    if run is not None and run["backend"] in LOCAL_BACKENDS:
        return Figure(1.0, "measured", "weights on disk"), ctx
    return UNKNOWN, ctx


def measured_candidates(store: Any, profile: Profile, here: str) -> list[Candidate]:
    """One candidate per (model, backend) with results."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in store.runs():
        if run["status"] in ("completed", "interrupted"):
            groups[(run["model"], run["backend"])].append(run)
    keys = list(profile.scored_tasks())
    keys += [k for k in profile.constraints.min_quality if k not in keys]
    out = []
    for (model, backend), runs in sorted(groups.items()):
        speed = _speed_run(runs, store, profile, here)
        quality, quality_runs = _quality_figures(runs, store, keys)
        if speed is None and not quality:
            continue
        run = speed[0] if speed else runs[-1]
        described = (run.get("metadata") or {}).get("model") or {}
        local = backend in LOCAL_BACKENDS or is_local_url(described.get("base_url"))
        open_weights, context = _catalog_facts(model, run)
        cand = Candidate(
            model=model,
            backend=backend,
            kind="measured",
            local=local,
            open_weights=open_weights,
            context=context,
            memory_bytes=UNKNOWN,
            decode_tps=UNKNOWN,
            ttft_s=UNKNOWN,
            tpot_s=UNKNOWN,
            cost_per_mtok=Figure(
                0.0, "n/a", "self-hosted: hardware and power not counted"
            )
            if local
            else Figure(None, "unknown", "llmarch stores no API prices"),
            quality=quality,
            device=run.get("device"),
            dtype=run.get("dtype"),
        )
        if speed is not None:
            _speed_figures(cand, speed, profile)
        cand.runs = sorted({*cand.runs, *quality_runs})
        out.append(cand)
    return out


def _speed_figures(
    cand: Candidate,
    speed: tuple[dict[str, Any], dict[str, Any], bool, str],
    profile: Profile,
) -> None:
    run, row, _, why = speed
    pct = profile.constraints.ttft_percentile
    where = (
        f"run {run['run_id']}, P={row['prompt_tokens']}, "
        f"{'B' if row.get('concurrency', 1) == 1 else 'concurrency '}"
        f"={_parallel(row)}, n={row['n']}"
    )
    cand.runs.append(run["run_id"])
    cand.speed_run = run["run_id"]
    cand.choices.append(f"speed from the {why} ({where})")
    cand.decode_tps = Figure(
        row["decode_tps_median"] * int(row.get("concurrency") or 1)
        if row.get("decode_tps_median") is not None
        else None,
        "measured",
        where,
        row.get("decode_tps_std"),
    )
    cand.ttft_s = Figure(row.get(f"ttft_s_{pct}"), "measured", where, row["ttft_s_std"])
    cand.tpot_s = Figure(
        row.get("tpot_s_median"), "measured", where, row.get("tpot_s_std")
    )
    if run["backend"] in LOCAL_BACKENDS:
        cand.memory_bytes = Figure(row.get("peak_memory_bytes"), "measured", where)
    elif not cand.local:
        cand.memory_bytes = Figure(0.0, "n/a", "served remotely")


# -- estimated candidates ----------------------------------------------------


def calibrate(store: Any, measured: list[Candidate], here: str) -> Basis:
    """This machine's limits and efficiencies (see llmarch.predict)."""
    return this_machine(store, here)


def estimated_candidate(entry: Any, profile: Profile, cal: Basis) -> Candidate | None:
    """A catalog model's figures from its architecture and this machine."""
    from llmarch.inspect import read_model

    try:
        a = arch.from_config(read_model(entry.id).config)
    except LlmarchError as exc:
        log.debug("no estimate for %s: %s", entry.id, exc)
        return None
    w = profile.workload
    dtype = profile.estimate_dtype
    kv_elem = 4 if dtype == "float32" else 2
    work = work_for(a, dtype, kv_elem)
    kv = work.kv_bytes(w.prompt_tokens + w.new_tokens - 1, w.batch)
    memory = work.weight_bytes + kv + (cal.overhead_bytes or 0)
    mem_note = f"{dtype} weights + KV" + (
        " + this machine's runtime overhead" if cal.overhead_bytes else ""
    )
    guess = predicted(
        work,
        cal,
        weights_dtype=dtype,
        prompt_tokens=w.prompt_tokens,
        new_tokens=w.new_tokens,
        batch=w.batch,
    )
    basis = f"{dtype} weights; {cal.note()}"
    none = Figure(None, "unknown", "this machine's limits are not measured yet")
    decode = (
        Figure(guess.decode_tps, "estimated", basis)
        if guess and guess.decode_tps
        else none
    )
    ttft = Figure(guess.ttft_s, "estimated", basis) if guess else none
    tpot = Figure(w.batch / decode.value, "estimated", basis) if decode.value else none
    return Candidate(
        model=entry.id,
        backend="transformers",
        kind="estimated",
        local=True,
        open_weights=Figure(float(entry.open_weights), "catalog", entry.license),
        context=Figure(a.context_length, "catalog", "model config")
        if a.context_length
        else UNKNOWN,
        memory_bytes=Figure(memory, "estimated", mem_note),
        decode_tps=decode,
        ttft_s=ttft,
        tpot_s=tpot,
        cost_per_mtok=Figure(0.0, "n/a", "self-hosted: hardware and power not counted"),
        dtype=dtype,
    )


def gather(
    store: Any, profile: Profile, *, here: str, estimates: bool = True
) -> tuple[list[Candidate], Basis]:
    """Measured candidates, then estimates for catalog models without results."""
    measured = measured_candidates(store, profile, here)
    cal = calibrate(store, measured, here)
    out = list(measured)
    if estimates:
        seen = {c.model for c in measured}
        for entry in load_catalog().values():
            if entry.id not in seen and entry.config:
                cand = estimated_candidate(entry, profile, cal)
                if cand is not None:
                    out.append(cand)
    return out, cal
