"""One ``llmarch bench`` invocation: resolve, load, measure, store, report."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from llmarch import __version__, memory
from llmarch.backends.base import Backend
from llmarch.bench import BenchSettings, parse_int_list, run_settings
from llmarch.errors import ConfigError, LlmarchError, ModelError
from llmarch.models import ModelRef, ensure_converted, resolve
from llmarch.quality.evaluate import (
    EvalSettings,
    check_backend,
    load_tasks,
    run_tasks,
    summaries,
)
from llmarch.report import json_document, summarize_samples, write_reports
from llmarch.store import ResultStore, now_iso
from llmarch.sysinfo import library_versions, machine_info

log = logging.getLogger(__name__)

KV_ELEMENT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LOCAL_BACKENDS = ("transformers", "llamacpp")


def _work_and_limits(
    backend: Backend, weight_bytes: int | None, console: Console
) -> dict[str, Any]:
    """The model's work and this machine's limits, for MBU and MFU.

    Only local backends whose architecture llmarch knows have them; the
    limits are measured once per machine (about 10 s) and cached.
    """
    from llmarch import hardware
    from llmarch.roofline import Work

    a = getattr(backend, "arch", None)
    if a is None or not weight_bytes or backend.NAME not in LOCAL_BACKENDS:
        return {}
    kv_elem = getattr(backend, "kv_bytes_per_element", None) or KV_ELEMENT_BYTES.get(
        backend.dtype, 4
    )
    work = Work.from_arch(a, weight_bytes=weight_bytes, kv_bytes_per_element=kv_elem)
    device = "cuda" if str(backend.device).startswith("cuda") else "cpu"
    found = hardware.cached(device)
    if found is None:
        with console.status(
            f"Measuring this machine's {device} bandwidth and FLOP/s once "
            "(about 10 s; cached, `llmarch hardware` shows them)"
        ):
            found = hardware.limits(device)
    return {"work": work.as_dict(), "hardware": hardware.as_dict(found)}


@dataclass
class BenchRequest:
    """The bench command's options, as typed by the user."""

    model: str | None
    prompt_tokens: str
    new_tokens: str
    batch: str
    repeat: int
    warmup: int
    device: str
    dtype: str
    force: bool
    db: Path
    out_dir: Path
    backend: str = "transformers"
    base_url: str | None = None
    served_model: str | None = None
    endpoint: str = "completions"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    quality: EvalSettings | None = None  # --tasks: quality in the same run
    speed: bool = True  # False for ``llmarch eval``: quality alone
    resume: bool = True  # continue an unfinished run with the same settings
    quant: str = "none"  # transformers: none, bnb-8bit, bnb-4bit
    device_map: str = "none"  # transformers: none or auto (spread over devices)
    max_memory: str | None = None  # with device_map auto: "0=20GiB,cpu=64GiB"
    kv_cache: str = "dynamic"  # transformers: dynamic, offloaded, fp8, int4, int2

    def settings(self) -> BenchSettings:
        return BenchSettings(
            prompt_tokens=parse_int_list(self.prompt_tokens, option="--prompt-tokens"),
            new_tokens=parse_int_list(self.new_tokens, option="--new-tokens"),
            batch=parse_int_list(self.batch, option="--batch"),
            repeat=self.repeat,
            warmup=self.warmup,
        )


@dataclass
class BenchOutcome:
    run_id: str
    status: str  # completed | interrupted | failed
    document: dict[str, Any]
    reports: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    resumed: bool = False


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (kill, timeout, CI) like Ctrl-C while measuring."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_writable(folder: Path, option: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write reports to {folder} ({exc.strerror}); pass {option} "
            "with a writable folder."
        ) from exc
    if not os.access(folder, os.W_OK):
        raise ConfigError(
            f"{folder} is not writable; pass {option} with a writable folder."
        )


BackendFactory = Callable[[ModelRef, BenchRequest], Backend]


def transformers_factory(ref: ModelRef, request: BenchRequest) -> Backend:
    from llmarch.backends.transformers_backend import TransformersBackend

    if request.speed:
        settings = request.settings()
        tokens, batch = settings.max_context(), max(settings.batch)
    else:
        tokens, batch = 0, 1
    if request.quality is not None:  # scoring holds a batch of requests at once
        tokens = max(tokens, request.quality.max_length or 2048)
        batch = max(batch, request.quality.batch_size)
    return TransformersBackend(
        ref,
        device=request.device,
        dtype=request.dtype,
        force=request.force,
        max_tokens=tokens,
        max_batch=batch,
        quant=request.quant,
        device_map=request.device_map,
        max_memory=request.max_memory,
        kv_cache=request.kv_cache,
    )


def llamacpp_factory(ref: ModelRef, request: BenchRequest) -> Backend:
    from llmarch.backends.llamacpp_backend import LlamaCppBackend
    from llmarch.quality.local import DEFAULT_MAX_LENGTH

    settings = request.settings() if request.speed else None
    quality = request.quality
    return LlamaCppBackend(
        ref,
        device=request.device,
        dtype=request.dtype,
        max_tokens=settings.max_context() if settings else 0,
        max_batch=max(settings.batch) if settings else 1,
        quality_tokens=(quality.max_length or DEFAULT_MAX_LENGTH) if quality else 0,
    )


BACKENDS = ("auto", "transformers", "llamacpp", "openai", "gemini")


def choose_backend(request: Any) -> str:
    """The backend for ``--backend auto``: local weights, else an API.

    A base URL means an OpenAI-compatible server. Otherwise local weights win
    when llmarch can find them (embedded, a folder, a GGUF, the Hugging Face
    cache); then the Gemini API when the catalog gives an API id and a key is
    set; else one line names both ways.
    """
    from llmarch.backends.gemini_backend import KEY_ENVS, gemini_key
    from llmarch.catalog import load_catalog

    if request.backend not in BACKENDS:
        raise ConfigError(
            f"--backend must be one of {', '.join(BACKENDS)}, not '{request.backend}'"
        )
    if request.backend != "auto":
        return str(request.backend)
    if request.base_url:
        return "openai"
    try:
        ref = resolve(request.model)
        entry = load_catalog().get(request.model or "")
        api_id = entry.api_ids.get("gemini") if entry else None
        if api_id and gemini_key() is not None and not _fits_locally(ref, request):
            log.warning(
                "%s does not fit in memory here; using the Gemini API (%s)",
                request.model,
                api_id,
            )
            return "gemini"
        return "transformers"
    except ModelError as exc:
        entry = load_catalog().get(request.model or "")
        api_id = entry.api_ids.get("gemini") if entry else None
        if entry is None or api_id is None:
            raise
        if gemini_key() is not None:
            return "gemini"
        raise ModelError(
            f"{request.model} has no local weights here: download {entry.hf_repo} "
            f"and pass its folder, or set {' or '.join(KEY_ENVS)} to measure it "
            f"through the Gemini API ({api_id})."
        ) from exc


def _fits_locally(ref: ModelRef, request: Any) -> bool:
    """Whether the local weights fit in free memory (as the bench's own check)."""
    from llmarch.backends.transformers_backend import TransformersBackend

    try:
        backend = TransformersBackend(ref, device=request.device, dtype=request.dtype)
        needed = backend.estimate_bytes()
        return needed is None or needed <= memory.available_bytes(backend.device)
    except LlmarchError:
        return True  # let the local run say what is wrong


def _gemini_backend(request: Any) -> tuple[ModelRef, Any]:
    from llmarch.backends.gemini_backend import GeminiBackend
    from llmarch.catalog import load_catalog

    entry = load_catalog().get(request.model or "")
    api_id = (
        request.served_model
        or (entry.api_ids.get("gemini") if entry else None)
        or request.model
    )
    if not api_id:
        raise ConfigError("--backend gemini needs a model or --served-model")
    ref = ModelRef(
        spec=request.model or api_id,
        name=request.model or api_id,
        kind="api",
        source=f"api:gemini (model {api_id})",
    )
    return ref, GeminiBackend(
        model=api_id,
        base_url=request.base_url,
        timeout_s=getattr(request, "timeout_s", 120.0),
    )


def _openai_backend(request: Any) -> tuple[ModelRef, Any]:
    """An OpenAI-compatible server; the tokenizer comes from the local model.

    ``request`` is a BenchRequest or LoadRequest (same API fields).
    """
    from llmarch.backends.openai_backend import OpenAIBackend

    if not request.base_url:
        raise ConfigError(
            "--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)"
        )
    from llmarch.backends.openai_backend import ENDPOINTS

    if request.endpoint not in ENDPOINTS:
        raise ConfigError(
            f"--endpoint must be one of {', '.join(ENDPOINTS)}, "
            f"not '{request.endpoint}'"
        )
    if getattr(request, "timeout_s", 1.0) <= 0:
        raise ConfigError(f"--timeout-s must be above 0, not {request.timeout_s}")
    served = request.served_model or request.model
    if not served:
        raise ConfigError("--backend openai needs a model name or --served-model")
    tokenizer = None
    try:  # exact prompt lengths when llmarch has the model's tokenizer
        from transformers import AutoTokenizer

        local = resolve(request.model) if request.model else None
        if local is not None:
            folder = ensure_converted(local)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (LlmarchError, OSError, ValueError) as exc:
        log.info("no local tokenizer for %s: %s", request.model, exc)
    ref = ModelRef(
        spec=request.model or served,
        name=request.model or served,
        kind="api",
        source=f"api:{request.base_url} (model {served}, {request.endpoint})",
    )
    backend = OpenAIBackend(
        base_url=request.base_url,
        model=served,
        endpoint=request.endpoint,
        api_key_env=request.api_key_env,
        tokenizer=tokenizer,
        timeout_s=getattr(request, "timeout_s", 120.0),
    )
    return ref, backend


def _start_or_resume(
    store: ResultStore,
    ref: ModelRef,
    backend: Backend,
    stored_settings: dict[str, Any],
    *,
    resume: bool,
    console: Console,
    extra: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """A new run, or the latest unfinished one with the same settings."""
    identity = {
        "model": ref.name,
        "backend": backend.NAME,
        "model_source": ref.source,
        "device": backend.device,
        "dtype": backend.dtype,
    }
    found = (
        store.resumable(**identity, settings=stored_settings)
        if resume and "quality" in stored_settings
        else None
    )
    if found is not None:
        run_id = found["run_id"]
        meta = found.get("metadata") or {}
        meta.setdefault("resumed_at", []).append(now_iso())
        store.update_run(run_id, status="running", metadata_json=meta)
        console.print(
            f"resuming run {run_id} (status {found['status']}): scored items are "
            "kept; pass --no-resume to start afresh",
            highlight=False,
        )
        return run_id, True
    run_id = store.start_run(
        **identity,
        llmarch_version=__version__,
        settings=stored_settings,
        metadata={
            "machine": machine_info(),
            "versions": library_versions(),
            "model": backend.describe(),
            "spec": ref.spec,
            **(extra or {}),
        },
    )
    return run_id, False


def run_bench(
    request: BenchRequest,
    *,
    console: Console,
    backend_factory: BackendFactory | None = None,
) -> BenchOutcome:
    """Run a bench (speed, and quality with --tasks; or quality alone).

    LlmarchError for bad input; otherwise an outcome with its status.
    """
    settings = request.settings() if request.speed else None
    quality = request.quality
    _check_writable(request.out_dir, "--out-dir")
    tasks = load_tasks(quality) if quality is not None else []
    kind = choose_backend(request)
    if kind == "openai":
        ref, backend = _openai_backend(request)
    elif kind == "gemini":
        ref, backend = _gemini_backend(request)
    else:
        ref = resolve(request.model)
        local = llamacpp_factory if kind == "llamacpp" else transformers_factory
        backend = (backend_factory or local)(ref, request)
    check_backend(backend, tasks)
    store = ResultStore(request.db)

    loading = f"Loading {ref.name} ({backend.device}, {backend.dtype})" + (
        ": converting the GGUF once, about a minute"
        if ref.needs_conversion and backend.NAME == "transformers"
        else ""
    )
    if not console.is_terminal:
        console.print(loading, highlight=False)
    with console.status(loading):
        load = backend.load()

    stored_settings: dict[str, Any] = settings.as_dict() if settings else {}
    extra = _work_and_limits(backend, load.weight_bytes, console) if settings else {}
    if quality is not None:
        stored_settings["quality"] = quality.key()
    if backend.NAME == "transformers":  # formats and placement tell runs apart
        for name in ("quant", "kv_cache", "device_map"):
            value = getattr(request, name, None)
            if value not in (None, "none", "dynamic"):
                stored_settings[name] = value
    run_id, resumed = _start_or_resume(
        store,
        ref,
        backend,
        stored_settings,
        resume=request.resume,
        console=console,
        extra=extra,
    )
    store.update_run(
        run_id,
        load_json={
            "load_s": load.load_s,
            "weight_bytes": load.weight_bytes,
            "peak_memory_bytes": load.peak_memory_bytes,
            "converted": load.converted,
            "convert_s": load.convert_s,
            **load.details,
        },
    )

    status, error = "completed", None
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    try:
        with progress, _sigterm_as_interrupt():
            if settings is not None:
                _measure_speed(
                    backend, settings, store, run_id, progress, console, resumed
                )
            if tasks:
                assert quality is not None
                _measure_quality(
                    backend, tasks, quality, store, run_id, progress, console
                )
    except KeyboardInterrupt:
        status = "interrupted"
    except LlmarchError:
        store.finish_run(run_id, "failed")
        raise
    except Exception as exc:  # a crash mid-run: keep what was measured
        log.debug("run failed", exc_info=True)
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        backend.close()

    measured = store.samples(run_id)
    if status == "completed" and measured and all(x.get("error") for x in measured):
        reasons = "; ".join(sorted({x["error"] for x in measured}))
        status, error = "failed", f"every request failed ({reasons})"
    store.finish_run(run_id, status)
    run = store.run(run_id)
    assert run is not None
    samples = store.samples(run_id, include_warmup=True)
    quality_rows = summaries(store, run_id)
    items = store.items(run_id) if quality_rows else []
    reports = write_reports(
        run, samples, request.out_dir, quality=quality_rows, items=items
    )
    document = json_document(run, summarize_samples(samples, run), samples)
    if quality is not None:
        document["quality"] = quality_rows
    store.close()
    return BenchOutcome(run_id, status, document, reports, error, resumed)


def _measure_speed(
    backend: Backend,
    settings: BenchSettings,
    store: ResultStore,
    run_id: str,
    progress: Progress,
    console: Console,
    resumed: bool,
) -> None:
    """The speed grid. A resumed run redoes an unfinished sweep from scratch,
    so that timings from two sessions are never mixed in one setting."""
    run = store.run(run_id) or {}
    meta = run.get("metadata") or {}
    if meta.get("speed_done"):
        return
    if resumed:
        store.delete_samples(run_id)
    task = progress.add_task("measuring", total=settings.total_runs())

    seen: dict[tuple[str, str, int], int] = {}

    def advance(row: dict[str, Any]) -> None:
        kind = "warm-up" if row["is_warmup"] else "run"
        label = f"P={row['prompt_tokens']} N={row['new_tokens']} B={row['batch']}" + (
            f" C={row['concurrency']}" if (row.get("concurrency") or 1) > 1 else ""
        )
        # API settings give one row per concurrent request: each is
        # that fraction of one run of the progress bar.
        share = 1 / max(row.get("concurrency") or 1, 1)
        progress.update(task, advance=share, description=f"{label} {kind}")
        if not console.is_terminal:  # logs get one line per sample
            decode, ttft = row["decode_tps"], row["ttft_s"]
            figures = (
                f"failed: {row['error']}"
                if row.get("error")
                else f"TTFT {ttft * 1e3:.1f} ms, decode "
                + (f"{decode:.2f} tok/s" if decode else "–")
            )
            key = (label, kind, row["repeat"])
            seen[key] = seen.get(key, 0) + 1
            concurrent = row.get("concurrency") or 1
            request = f" request {seen[key]}/{concurrent}" if concurrent > 1 else ""
            console.print(
                f"{label} {kind} {row['repeat'] + 1}{request}: {figures}",
                highlight=False,
            )

    run_settings(backend, settings, store, run_id, on_sample=advance)
    progress.remove_task(task)
    meta["speed_done"] = True
    store.update_run(run_id, metadata_json=meta)


def _measure_quality(
    backend: Backend,
    tasks: list[Any],
    quality: EvalSettings,
    store: ResultStore,
    run_id: str,
    progress: Progress,
    console: Console,
) -> None:
    bars: dict[str, Any] = {}
    done: dict[str, int] = {}

    def advance(name: str, n: int, total: int) -> None:
        first = name not in bars
        if first:
            bars[name] = progress.add_task(name, total=total, completed=n)
        else:
            progress.update(bars[name], advance=n)
        done[name] = done.get(name, 0) + n
        if not console.is_terminal and (n or first):  # logs: one line per chunk
            note = " already scored" if first and n else ""
            console.print(f"{name}: {done[name]}/{total} items{note}", highlight=False)

    run_tasks(backend, tasks, quality, store, run_id, on_progress=advance)


@dataclass
class LoadRequest:
    """The load command's options."""

    model: str | None
    base_url: str | None
    served_model: str | None
    endpoint: str
    api_key_env: str
    db: Path
    out_dir: Path
    timeout_s: float = 120.0


@dataclass
class LoadOutcome:
    run_id: str
    status: str
    levels: list[dict[str, Any]]


def run_load(request: LoadRequest, settings: Any, *, console: Console) -> LoadOutcome:
    """Sweep the settings' levels against the server; every request is stored."""
    from llmarch.load import run_level, summarize_level

    ref, backend = _openai_backend(request)
    store = ResultStore(request.db)
    with console.status(f"Checking {request.base_url}"):
        load = backend.load()
    run_id = store.start_run(
        model=ref.name,
        backend=backend.NAME,
        model_source=ref.source,
        device=backend.device,
        dtype=backend.dtype,
        llmarch_version=__version__,
        settings={"load": settings.as_dict()},
        metadata={
            "machine": machine_info(),
            "versions": library_versions(),
            "model": backend.describe(),
            "spec": ref.spec,
        },
    )
    levels: list[dict[str, Any]] = []
    status = "completed"
    try:
        with _sigterm_as_interrupt():
            for kind, value in settings.levels():
                label = f"{kind} {value:g}"
                rows: list[dict[str, Any]] = []

                def keep(sample: Any, rows: list[dict[str, Any]] = rows) -> None:
                    row = store.add_sample(
                        run_id, sample, repeat=len(rows), is_warmup=False
                    )
                    rows.append(row)

                with console.status(f"{label}: {settings.requests} requests"):
                    _, duration = run_level(
                        backend, kind, value, settings, on_sample=keep
                    )
                summary = summarize_level(
                    rows,
                    duration,
                    slo_ttft_s=settings.slo_ttft_s,
                    slo_tpot_s=settings.slo_tpot_s,
                )
                levels.append({"kind": kind, "value": value, **summary})
                store.update_run(
                    run_id,
                    load_json={
                        "load_s": load.load_s,
                        "levels": [
                            {
                                "kind": x["kind"],
                                "value": x["value"],
                                "duration_s": x["duration_s"],
                            }
                            for x in levels
                        ],
                    },
                )
                if not console.is_terminal:
                    reasons = (
                        f" ({'; '.join(summary['errors'])})"
                        if summary["errors"]
                        else ""
                    )
                    console.print(
                        f"{label}: {summary['completed']} completed, "
                        f"{summary['failed']} failed{reasons} in "
                        f"{duration:.1f} s",
                        highlight=False,
                    )
    except KeyboardInterrupt:
        status = "interrupted"
    if status == "completed" and levels and not any(lv["completed"] for lv in levels):
        status = "failed"  # every request failed: not a measurement
    store.finish_run(run_id, status)
    store.close()
    return LoadOutcome(run_id, status, levels)
