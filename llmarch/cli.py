"""The ``llmarch`` command line: wires options to domain functions and renders.

Results go to stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from llmarch import __version__, paths
from llmarch.errors import ConfigError, LlmarchError

app = typer.Typer(
    help="Benchmark language models with one harness and choose one for a use case.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


# Options shared by the commands that talk to API servers.
BaseUrl = Annotated[
    str | None, typer.Option(help="API base URL, e.g. http://127.0.0.1:8000/v1.")
]
ServedModel = Annotated[
    str | None, typer.Option(help="Model name the server knows (default: MODEL).")
]
Endpoint = Annotated[str, typer.Option(help="completions or chat.")]
ApiKeyEnv = Annotated[
    str, typer.Option(help="Environment variable that holds the API key.")
]
TimeoutS = Annotated[
    float, typer.Option(help="API requests: seconds before a request times out.")
]


# Options shared by the commands that score quality.
Tasks = Annotated[
    str | None,
    typer.Option(
        help="Quality tasks, comma-separated (e.g. arc-easy,piqa; 'llmarch tasks' "
        "lists them), or task YAML files."
    ),
]
Limit = Annotated[
    int | None,
    typer.Option(help="Items per task, drawn with --seed (default: all)."),
]
Shots = Annotated[int, typer.Option(help="Few-shot examples per item.")]
Seed = Annotated[
    int, typer.Option(help="Seed for the --limit subset and few-shot draws.")
]
EvalBatch = Annotated[
    int, typer.Option(help="Requests scored at once (scores do not depend on it).")
]
MaxLength = Annotated[
    int | None,
    typer.Option(
        help="Token window for scoring (default: the model's context, at most 4096)."
    ),
]
MaxNewTokens = Annotated[
    int | None,
    typer.Option(help="Generation tasks: tokens to generate (default: the task's)."),
]
Resume = Annotated[
    bool,
    typer.Option(
        help="Continue the latest unfinished run with the same settings, "
        "skipping scored items."
    ),
]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        out.print(f"llmarch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show debug logs.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """llmarch measures latency, throughput, memory and quality of language models."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )
    os.environ["LLMARCH_VERBOSE"] = "1" if verbose else ""


@app.command()
def bench(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Catalog id, local model folder or .gguf file. Default: gemma-3-270m."
        ),
    ] = None,
    prompt_tokens: Annotated[
        str,
        typer.Option(help="Prompt lengths in tokens (BOS included), comma-separated."),
    ] = "128,512",
    new_tokens: Annotated[
        str, typer.Option(help="Tokens to generate per run (EOS never stops early).")
    ] = "64",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1",
    repeat: Annotated[int, typer.Option(help="Measured runs per setting.")] = 3,
    warmup: Annotated[
        int,
        typer.Option(
            help="Warm-up runs per setting: stored, excluded from statistics."
        ),
    ] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto, float32, bfloat16 or float16.")
    ] = "auto",
    force: Annotated[
        bool, typer.Option(help="Load even when the model seems too big for memory.")
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            help="Results database (default: $LLMARCH_DB or results/llmarch.sqlite)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the CSV and Markdown reports (default: results/)."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON document to stdout instead of a table."
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (local weights, else an API), transformers, llamacpp (a "
            "GGUF through llama.cpp), openai or gemini."
        ),
    ] = "auto",
    base_url: BaseUrl = None,
    served_model: ServedModel = None,
    endpoint: Endpoint = "completions",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    timeout_s: TimeoutS = 120.0,
    tasks: Tasks = None,
    limit: Limit = None,
    shots: Shots = 0,
    seed: Seed = 1234,
    eval_batch: EvalBatch = 8,
    max_length: MaxLength = None,
    max_new_tokens: MaxNewTokens = None,
    resume: Resume = True,
    quant: Annotated[
        str,
        typer.Option(
            help="Weights: none, bnb-8bit or bnb-4bit (bitsandbytes; "
            "pip install 'llmarch[gpu]')."
        ),
    ] = "none",
    device_map: Annotated[
        str,
        typer.Option(
            help="none (one device) or auto (layers spread over GPUs, then CPU)."
        ),
    ] = "none",
    max_memory: Annotated[
        str | None,
        typer.Option(
            help="With --device-map auto: memory per device, e.g. 0=20GiB,cpu=64GiB."
        ),
    ] = None,
    kv_cache: Annotated[
        str,
        typer.Option(help="KV cache: dynamic, offloaded (CUDA), fp8, int4 or int2."),
    ] = "dynamic",
) -> None:
    """Measure latency, throughput and memory of a model, locally or through an API.

    With --tasks, quality is scored in the same run and reported beside speed.
    """
    from llmarch.runner import BenchRequest

    try:
        quality = _quality_settings(
            tasks, limit, shots, seed, eval_batch, max_length, max_new_tokens
        )
    except LlmarchError as exc:
        _fail(str(exc))
        return
    request = BenchRequest(
        model=model,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        batch=batch,
        repeat=repeat,
        warmup=warmup,
        device=device,
        dtype=dtype,
        force=force,
        db=db or paths.db_path(),
        out_dir=out_dir or paths.results_dir(),
        backend=backend,
        base_url=base_url,
        served_model=served_model,
        endpoint=endpoint,
        api_key_env=api_key_env,
        timeout_s=timeout_s,
        quality=quality,
        resume=resume,
        quant=quant,
        device_map=device_map,
        max_memory=max_memory,
        kv_cache=kv_cache,
    )
    _run_and_print(request, as_json)


def _quality_settings(
    tasks: str | None,
    limit: int | None,
    shots: int,
    seed: int,
    eval_batch: int,
    max_length: int | None,
    max_new_tokens: int | None,
) -> Any:
    from llmarch.quality.evaluate import EvalSettings

    if tasks is None:
        return None
    return EvalSettings.parse(
        tasks,
        limit=limit,
        shots=shots,
        seed=seed,
        batch_size=eval_batch,
        max_length=max_length,
        max_new_tokens=max_new_tokens,
    )


def _run_and_print(request: Any, as_json: bool) -> None:
    from llmarch.runner import run_bench

    try:
        outcome = run_bench(request, console=err)
    except LlmarchError as exc:
        _fail(str(exc))
        return

    if as_json:
        out.print_json(json.dumps(outcome.document, default=str))
    else:
        if outcome.document["samples"]:
            _print_summary(outcome.document)
        if outcome.document.get("quality"):
            _print_quality(outcome.document)
    failed = [x for x in outcome.document["samples"] if x.get("error")]
    if failed:
        reasons = ", ".join(sorted({x["error"] for x in failed}))
        err.print(
            f"[yellow]warning:[/] {len(failed)} of {len(outcome.document['samples'])} "
            f"requests failed ({reasons}); they are counted in 'failed', not in the "
            "statistics.",
            highlight=False,
        )
    for kind, path in outcome.reports.items():
        err.print(f"{kind}: {path}", highlight=False)
    err.print(f"database: {request.db} (run {outcome.run_id})", highlight=False)
    if outcome.status == "interrupted":
        err.print(
            "[yellow]interrupted:[/] what was measured so far is kept; run the same "
            "command again to resume scoring."
            if request.quality is not None
            else "[yellow]interrupted:[/] the samples measured so far are kept."
        )
        raise typer.Exit(130)
    if outcome.status == "failed":
        _fail(f"the run failed: {outcome.error}; the samples measured so far are kept.")


def _print_summary(document: dict[str, Any]) -> None:
    from llmarch.report import console_table

    run = document["run"]
    headers, body = console_table(document["summary"])
    quant = (run.get("load") or {}).get("quant")
    title = f"{run['model']} · {run['backend']} · {run['device']} · {run['dtype']}"
    table = Table(
        title=title + (f" · {quant}" if quant and quant != "none" else ""),
        caption="medians over measured runs (warm-ups excluded); "
        "KV ✓ = measured equals computed",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    for header in headers:
        # Fold rather than cut: a number must never be shown truncated.
        table.add_column(header, justify="right", overflow="fold")
    for cells in body:
        table.add_row(*cells)
    out.print(table)


def _print_quality(document: dict[str, Any]) -> None:
    from llmarch.report import quality_table

    run = document["run"]
    q = (run.get("settings") or {}).get("quality") or {}
    headers, body = quality_table(document["quality"])
    table = Table(
        title=f"quality · {run['model']} · {run['backend']} · "
        f"{q.get('shots', 0)}-shot · limit {q.get('limit') or 'all'} · "
        f"seed {q.get('seed')}",
        caption="s.e. = standard error (sample std. dev. / √items); ties: items "
        "whose best choices were within 1e-4 nats, scored 1/k",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    for i, header in enumerate(headers):
        if i < 2:
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, justify="right", overflow="fold")
    for cells in body:
        table.add_row(*cells)
    out.print(table)


@app.command(name="eval")
def eval_(
    model: Annotated[
        str | None,
        typer.Argument(
            help="Catalog id, local model folder or .gguf file. Default: gemma-3-270m."
        ),
    ] = None,
    tasks: Tasks = "arc-easy",
    limit: Limit = None,
    shots: Shots = 0,
    seed: Seed = 1234,
    eval_batch: EvalBatch = 8,
    max_length: MaxLength = None,
    max_new_tokens: MaxNewTokens = None,
    resume: Resume = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto, float32, bfloat16 or float16.")
    ] = "auto",
    force: Annotated[
        bool, typer.Option(help="Load even when the model seems too big for memory.")
    ] = False,
    db: Annotated[
        Path | None,
        typer.Option(
            help="Results database (default: $LLMARCH_DB or results/llmarch.sqlite)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for the reports (default: results/)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON document to stdout instead of a table."
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="auto (local weights, else an API), transformers, llamacpp (a "
            "GGUF through llama.cpp), openai or gemini."
        ),
    ] = "auto",
    base_url: BaseUrl = None,
    served_model: ServedModel = None,
    endpoint: Endpoint = "completions",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    timeout_s: TimeoutS = 120.0,
) -> None:
    """Score quality alone: accuracy on benchmark tasks, with per-item records."""
    from llmarch.runner import BenchRequest

    try:
        quality = _quality_settings(
            tasks, limit, shots, seed, eval_batch, max_length, max_new_tokens
        )
    except LlmarchError as exc:
        _fail(str(exc))
        return
    request = BenchRequest(
        model=model,
        prompt_tokens="1",
        new_tokens="1",
        batch="1",
        repeat=1,
        warmup=0,
        device=device,
        dtype=dtype,
        force=force,
        db=db or paths.db_path(),
        out_dir=out_dir or paths.results_dir(),
        backend=backend,
        base_url=base_url,
        served_model=served_model,
        endpoint=endpoint,
        api_key_env=api_key_env,
        timeout_s=timeout_s,
        quality=quality,
        speed=False,
        resume=resume,
    )
    _run_and_print(request, as_json)


@app.command(name="tasks")
def tasks_(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List the built-in quality tasks and the MMLU subjects."""
    from llmarch.quality.tasks import builtin_names, mmlu_subjects

    names = builtin_names()
    try:
        subjects = mmlu_subjects()
    except LlmarchError:
        subjects = []
    if as_json:
        out.print_json(
            json.dumps(
                {"tasks": dict(names), "mmlu_subjects": [f"mmlu-{s}" for s in subjects]}
            )
        )
        return
    table = Table(title="built-in quality tasks", box=box.SIMPLE_HEAD)
    table.add_column("task", no_wrap=True)
    table.add_column("data and scoring")
    for name, about in names:
        table.add_row(name, about)
    out.print(table)
    if subjects:
        out.print("MMLU subjects: " + ", ".join(f"mmlu-{s}" for s in subjects))
    out.print(
        "Your own task: a YAML file (see the README, 'Quality tasks'), passed in "
        "--tasks like a name."
    )


def _billions(n: int | None) -> str:
    return f"{n / 1e9:.2f}" if n else "–"


@app.command()
def models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table.")
    ] = False,
) -> None:
    """List the models llmarch knows by id."""
    from llmarch.catalog import load_catalog

    entries = list(load_catalog().values())
    if as_json:
        out.print_json(json.dumps([e.model_dump() for e in entries]))
        return
    table = Table(
        title="llmarch catalog",
        box=box.SIMPLE_HEAD,
        caption="params and active: published, in billions; weights: PyPI = shipped "
        "with llmarch, folder = download them yourself",
    )
    columns = ("id", "family", "params", "active", "open", "licence", "weights")
    for column in columns:
        # Nothing may be cut: ids, figures and licences stay whole.
        width = 10 if column == "licence" else len(column)  # "apache-2.0"
        table.add_column(column, no_wrap=True, min_width=width)
    for e in entries:
        table.add_row(
            e.id,
            e.family,
            _billions(e.params_published),
            _billions(e.params_active_published),
            "yes" if e.open_weights else "no",
            e.license,
            "PyPI" if e.weights.kind == "pypi-gguf" else "folder",
        )
    out.print(table)


def _prediction_basis(device_name: str | None, db: Path | None) -> Any:
    """A named device's figures, or this machine's limits and efficiencies."""
    from llmarch import hardware, predict
    from llmarch.store import ResultStore
    from llmarch.sysinfo import machine_info

    if device_name:
        return predict.named_device(device_name)
    info = machine_info()
    device = "cuda" if info.get("gpu") else "cpu"
    if hardware.cached(device) is None:
        with err.status(f"Measuring this machine's {device} limits once (about 10 s)"):
            hardware.limits(device)
    path = db or paths.db_path()
    store = ResultStore(path) if path.exists() else None
    try:
        return predict.this_machine(
            store, predict.hardware_key(info, device), device=device
        )
    finally:
        if store is not None:
            store.close()


@app.command()
def inspect(
    models: Annotated[
        list[str], typer.Argument(help="Catalog ids, model folders or .gguf files.")
    ],
    context: Annotated[int, typer.Option(help="Context length in tokens.")] = 8192,
    batch: Annotated[int, typer.Option(help="Sequences held at once.")] = 1,
    weights_dtype: Annotated[
        str, typer.Option(help="float32, bfloat16, int8 or 4bit, for the memory check.")
    ] = "bfloat16",
    kv_dtype: Annotated[
        str, typer.Option(help="float32, bfloat16, float16 or int8 for the KV cache.")
    ] = "bfloat16",
    prompt_tokens: Annotated[
        int, typer.Option(help="Prompt length of the speed prediction.")
    ] = 512,
    new_tokens: Annotated[
        int, typer.Option(help="New tokens of the speed prediction.")
    ] = 128,
    device_name: Annotated[
        str | None,
        typer.Option(
            help="Predict for a named device (`llmarch hardware --known`) "
            "instead of this machine."
        ),
    ] = None,
    predict: Annotated[
        bool, typer.Option(help="Predict decode tokens/s and TTFT.")
    ] = True,
    db: Annotated[
        Path | None, typer.Option(help="Results database the efficiencies come from.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Explain models' architectures in numbers, side by side."""
    from llmarch.inspect import check_options, free_memory, read_model, report
    from llmarch.render import inspect_tables

    try:
        check_options(
            context=context, batch=batch, weights_dtype=weights_dtype, kv_dtype=kv_dtype
        )
        if prompt_tokens < 1 or new_tokens < 1:
            raise ConfigError("--prompt-tokens and --new-tokens must be at least 1")
        basis = _prediction_basis(device_name, db) if predict else None
        free = free_memory()
        reports = [
            report(
                read_model(m),
                context=context,
                batch=batch,
                weights_dtype=weights_dtype,
                kv_dtype=kv_dtype,
                free_memory=free,
                basis=basis,
                prompt_tokens=prompt_tokens,
                new_tokens=new_tokens,
            )
            for m in models
        ]
    except LlmarchError as exc:
        _fail(str(exc))
        return
    if as_json:
        out.print_json(json.dumps(reports))
    else:
        for table in inspect_tables(reports, width=out.width):
            out.print(table)
        for r in reports:
            for line in r["unknown"]:
                err.print(
                    f"{r['model']}: unknown from this source: {line}", highlight=False
                )


@app.command()
def load(
    model: Annotated[
        str | None, typer.Argument(help="Catalog id or folder, for the tokenizer.")
    ] = None,
    base_url: BaseUrl = None,
    served_model: ServedModel = None,
    endpoint: Endpoint = "completions",
    api_key_env: ApiKeyEnv = "OPENAI_API_KEY",
    timeout_s: TimeoutS = 120.0,
    concurrency: Annotated[
        str, typer.Option(help="Concurrency levels, comma-separated (e.g. 1,4,16).")
    ] = "",
    rate: Annotated[
        str, typer.Option(help="Poisson request rates in req/s, comma-separated.")
    ] = "",
    requests: Annotated[int, typer.Option(help="Requests sent per level.")] = 20,
    prompt_tokens: Annotated[int, typer.Option(help="Prompt length in tokens.")] = 128,
    new_tokens: Annotated[int, typer.Option(help="max_tokens of each request.")] = 64,
    slo_ttft_ms: Annotated[
        float | None, typer.Option(help="Goodput target: TTFT at most this (ms).")
    ] = None,
    slo_tpot_ms: Annotated[
        float | None, typer.Option(help="Goodput target: TPOT at most this (ms).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the Poisson arrivals.")] = 0,
    db: Annotated[Path | None, typer.Option(help="Results database.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Sweep concurrency levels and request rates against an API server."""
    from llmarch.bench import parse_int_list
    from llmarch.load import LoadSettings
    from llmarch.render import load_table
    from llmarch.runner import LoadRequest, run_load

    try:
        rates = [float(x) for x in rate.split(",")] if rate.strip() else []
    except ValueError:
        _fail(f"--rate takes numbers separated by commas (e.g. 0.5,2), not '{rate}'")
        return
    try:
        settings = LoadSettings(
            concurrency=(
                parse_int_list(concurrency, option="--concurrency")
                if concurrency.strip()
                else []
            ),
            rates=rates,
            requests=requests,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            seed=seed,
            slo_ttft_s=slo_ttft_ms / 1e3 if slo_ttft_ms is not None else None,
            slo_tpot_s=slo_tpot_ms / 1e3 if slo_tpot_ms is not None else None,
        )
        outcome = run_load(
            LoadRequest(
                model=model,
                base_url=base_url,
                served_model=served_model,
                endpoint=endpoint,
                api_key_env=api_key_env,
                db=db or paths.db_path(),
                out_dir=paths.results_dir(),
                timeout_s=timeout_s,
            ),
            settings,
            console=err,
        )
    except LlmarchError as exc:
        _fail(str(exc))
        return
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "run_id": outcome.run_id,
                    "status": outcome.status,
                    "levels": outcome.levels,
                }
            )
        )
    else:
        out.print(load_table(outcome.levels))
    err.print(
        f"database: {db or paths.db_path()} (run {outcome.run_id})", highlight=False
    )
    if outcome.status == "interrupted":
        err.print(
            "[yellow]interrupted:[/] every request finished so far is kept, "
            "also those of the level in progress."
        )
        raise typer.Exit(130)
    if outcome.status == "failed":
        reasons = sorted({e for lv in outcome.levels for e in lv["errors"]})
        _fail(f"every request failed ({'; '.join(reasons)}); check the server log.")


def _register_groups() -> None:
    from llmarch.cli_recommend import profiles_app, recommend
    from llmarch.cli_results import compare, report, results_app

    app.add_typer(profiles_app, name="profiles")
    app.command("recommend")(recommend)
    from llmarch.cli_exchange import results_export, results_import

    results_app.command("export")(results_export)
    results_app.command("import")(results_import)
    app.add_typer(results_app, name="results")
    app.command("report")(report)
    app.command("compare")(compare)
    from llmarch.cli_hardware import hardware

    app.command("hardware")(hardware)


_register_groups()


def main() -> None:
    """Console-script entry point."""
    app()
