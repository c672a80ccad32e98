"""``llmarch results``, ``llmarch report`` and ``llmarch compare``: wiring and tables.

The figures and their definitions live in ``llmarch.reports`` and in the
README's "Reports, history and comparisons"; this module only reads options,
calls them and renders what they return.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from llmarch import paths
from llmarch.errors import ConfigError, LlmarchError

results_app = typer.Typer(
    help="List past runs from the results database, show one, or delete one.",
    invoke_without_command=True,
    no_args_is_help=False,
)

MIB = 2**20
# Suffixes of --out that choose the format when --format is not given.
SUFFIX_FORMATS = {
    ".md": "md",
    ".markdown": "md",
    ".csv": "csv",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
}

Db = Annotated[
    Path | None,
    typer.Option(help="Results database (default: results/llmarch.sqlite)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
RunId = Annotated[
    str, typer.Argument(help="A run id, or the start of one that is unique.")
]


def _consoles() -> tuple[Any, Any, Any]:
    from llmarch.cli import _fail, err, out

    return out, err, _fail


def _store(db: Path | None) -> Any:
    from llmarch.reports.aggregate import open_store

    return open_store(db or paths.db_path())


def _num(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value * scale:,.{digits}f}"


def _quality_text(quality: dict[str, Any]) -> str:
    """``arc-easy acc 60.0 %``: each task's main metric, accuracies in percent."""
    parts = []
    for task, fig in quality.items():
        if fig["metric"] in ("acc", "exact_match"):
            parts.append(f"{task} {fig['metric']} {_num(fig['value'], 100, 1)} %")
        else:
            parts.append(f"{task} {fig['metric']} {_num(fig['value'], 1, 3)}")
    return "; ".join(parts) or "–"


# -- llmarch results -------------------------------------------------------------


@results_app.callback()
def results_list(ctx: typer.Context, as_json: AsJson = False, db: Db = None) -> None:
    """List the runs in the results database, oldest first."""
    ctx.obj = {"db": db}
    if ctx.invoked_subcommand is not None:
        return
    _list(db, as_json)


@results_app.command("list")
def results_list_command(
    ctx: typer.Context, as_json: AsJson = False, db: Db = None
) -> None:
    """List the runs in the results database, oldest first."""
    _list(db or (ctx.obj or {}).get("db"), as_json)


def _list(db: Path | None, as_json: bool) -> None:
    from llmarch.reports.aggregate import headline, load_runs

    out, err, fail = _consoles()
    try:
        store = _store(db)
        data = load_runs(store, store.runs(), with_samples=False)
    except LlmarchError as exc:
        fail(str(exc))
        return
    lines = [headline(d) for d in data]
    if as_json:
        out.print_json(json.dumps(lines, default=str))
        return
    if not lines:
        err.print(f"{store.path} holds no run; run llmarch bench first")
        return
    table = Table(
        title=f"runs in {store.path}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
        caption="decode: highest median of any setting; TTFT: lowest median; "
        "peak: largest of any setting (MiB = 2^20 bytes)",
    )
    rows = [
        [
            h["run_id"],
            str(h["started_at"]).replace("+00:00", "").replace("T", " ")[:16],
            h["status"],
            h["model"],
            f"{h['backend']} · {h['device'] or '–'}",
            str(h["samples"]),
            _num(h["decode_tps"], 1, 2),
            _num(h["ttft_s"], 1e3, 1),
            _num(h["peak_memory_bytes"], 1 / MIB, 0),
            _quality_text(h["quality"]),
        ]
        for h in lines
    ]
    headers = ["run", "started (UTC)", "status", "model", "backend · device"]
    headers += ["samples", "decode\ntok/s", "TTFT\nms", "peak\nMiB", "quality"]
    # Fold rather than cut: an id or a number must never be shown truncated
    # (a minimum width would make a narrow terminal drop whole columns).
    for i, header in enumerate(headers):
        table.add_column(
            header,
            justify="right" if 5 <= i <= 8 else "left",
            overflow="fold",
            no_wrap=i == 0,
        )
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _ctx_db(ctx: typer.Context, db: Path | None) -> Path | None:
    return db or (ctx.obj or {}).get("db")


@results_app.command("show")
def results_show(
    ctx: typer.Context, run_id: RunId, as_json: AsJson = False, db: Db = None
) -> None:
    """Print one run: its facts, the summary of each setting, quality."""
    from llmarch.cli import _print_quality, _print_summary
    from llmarch.report import json_document
    from llmarch.reports.aggregate import load_runs, resolve_run

    out, _, fail = _consoles()
    try:
        store = _store(_ctx_db(ctx, db))
        d = load_runs(store, [resolve_run(store, run_id)])[0]
    except LlmarchError as exc:
        fail(str(exc))
        return
    if as_json:
        doc = json_document(d.run, d.rows, d.samples)
        out.print_json(json.dumps({**doc, "quality": d.quality}, default=str))
        return
    run = d.run
    load = run.get("load") or {}
    machine = (run.get("metadata") or {}).get("machine") or {}
    facts = [
        ("run", run["run_id"]),
        ("status", run["status"]),
        ("started (UTC)", run["started_at"]),
        ("finished (UTC)", run.get("finished_at") or "–"),
        ("model", run["model"]),
        ("source", run.get("model_source") or "–"),
        ("backend", run["backend"]),
        ("device", run.get("device") or "–"),
        ("dtype", run.get("dtype") or "–"),
        ("weights (MiB)", _num(load.get("weight_bytes"), 1 / MIB, 1)),
        ("load time (s)", _num(load.get("load_s"), 1, 2)),
        ("CPU", machine.get("cpu_model") or "–"),
        ("GPU", (machine.get("gpu") or {}).get("name") or "none"),
    ]
    for key, value in facts:
        out.print(f"{key}: {value}", highlight=False, markup=False)
    if d.rows:
        _print_summary({"run": run, "summary": d.rows})
    if d.quality:
        _print_quality({"run": run, "quality": d.quality})


@results_app.command("rm")
def results_rm(
    ctx: typer.Context,
    run_id: RunId,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking.")
    ] = False,
    db: Db = None,
) -> None:
    """Delete one run with its samples and quality items, after confirmation."""
    from llmarch.reports.aggregate import resolve_run

    out, err, fail = _consoles()
    try:
        store = _store(_ctx_db(ctx, db))
        run = resolve_run(store, run_id)
    except LlmarchError as exc:
        fail(str(exc))
        return
    rid = run["run_id"]
    what = (
        f"run {rid} ({run['model']}, {run['backend']}, started {run['started_at']}, "
        f"{len(store.samples(rid, include_warmup=True))} samples, "
        f"{len(store.items(rid))} quality items)"
    )
    if not yes:
        try:
            sure = typer.confirm(f"delete {what} from {store.path}?", err=True)
        except typer.Abort:  # no answer (end of input)
            err.print()
            sure = False
        if not sure:
            err.print(
                f"kept run {rid}; nothing deleted (pass --yes to delete without "
                "asking)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)
    gone = store.delete_run(rid)
    out.print(
        f"deleted run {rid}: {gone['samples']} samples, {gone['quality_items']} "
        "quality items",
        highlight=False,
    )


# -- llmarch report --------------------------------------------------------------


def report(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to report (ids or unique starts of ids; default: every "
            "completed or interrupted run)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="md, csv, json or html (default: from --out's suffix, else md).",
        ),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="File or folder to write (default: results/report.<format>; "
            "'-' prints to stdout).",
        ),
    ] = None,
    plots: Annotated[
        bool, typer.Option(help="Draw the plots (md, html) beside the report.")
    ] = True,
    kv_models: Annotated[
        str | None,
        typer.Option(
            help="More models for the KV-cache table and plot, comma-separated "
            "(catalog ids, folders or .gguf files)."
        ),
    ] = None,
    use_case: Annotated[
        str | None,
        typer.Option(
            help="Profile for the quality / speed front (default: built from the "
            "runs' common tasks and setting)."
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Aggregate runs into one report: tables of every figure, and plots."""
    from llmarch.profiles import get_profile
    from llmarch.reports import FORMATS, write_report

    out, err, fail = _consoles()
    try:
        if fmt is None:
            suffix = out_path.suffix.lower() if out_path is not None else ""
            fmt = SUFFIX_FORMATS.get(suffix, "md")
        if fmt not in FORMATS:
            raise ConfigError(
                f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}"
            )
        profile = get_profile(use_case, None) if use_case else None
        store = _store(db)
        extra = [m.strip() for m in (kv_models or "").split(",") if m.strip()]
        written = write_report(
            store,
            run_ids or [],
            fmt=fmt,
            out=out_path,
            plots=plots,
            profile=profile,
            kv_extra=extra,
        )
    except LlmarchError as exc:
        fail(str(exc))
        return
    if written.path is None:
        # Printed as is: rich would wrap long lines and read [..] as markup.
        typer.echo(written.text, nl=False)
        return
    say = {"highlight": False, "markup": False, "soft_wrap": True}
    err.print(f"report ({fmt}, {written.runs} runs): {written.path}", **say)
    for path in written.others:
        err.print(f"  beside it: {path}", **say)
    for p in written.plots:
        if p.path is not None:
            err.print(f"  plot: {p.path}", **say)
        else:
            err.print(f"  plot not drawn, {p.title}: {p.skipped}", **say)


# -- llmarch compare -------------------------------------------------------------


def compare(
    run_a: Annotated[str, typer.Argument(help="Run A (the baseline): id or prefix.")],
    run_b: Annotated[str, typer.Argument(help="Run B: id or prefix.")],
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """Two runs side by side: each figure's change and whether it beats the noise."""
    from llmarch.reports import compare_runs, resolve_run
    from llmarch.reports.compare import compare_json, compare_table, setting_text

    out, _, fail = _consoles()
    try:
        store = _store(db)
        a, b = resolve_run(store, run_a), resolve_run(store, run_b)
        result = compare_runs(store, a, b)
    except LlmarchError as exc:
        fail(str(exc))
        return
    if as_json:
        out.print_json(json.dumps(compare_json(result), default=str))
        return
    table = Table(
        title=f"A = {a['run_id']} ({a['model']}), B = {b['run_id']} ({b['model']})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
        caption="speed: means over the measured repeats; larger than noise when "
        "|B − A| > 2·√(s_A²/n_A + s_B²/n_B) (quality: 2·√(se_A² + se_B²)); "
        "noise unknown with fewer than 2 repeats",
    )
    headers, rows = compare_table(result)
    for h in headers[1:]:
        left = h in ("figure (unit)", "verdict")
        table.add_column(
            h,
            justify="left" if left else "right",
            overflow="fold",
            no_wrap=h == "figure (unit)",
        )
    group = None
    for row in rows:
        if row[0] != group:
            if group is not None:
                table.add_section()
            group = row[0]
            table.add_row(f"[bold]{escape(group)}[/]")
        table.add_row(*(escape(c) for c in row[1:]))
    out.print(table)
    notes = []
    for key, who in (("only_a", "A"), ("only_b", "B")):
        notes += [f"only in {who}: {setting_text(s)}" for s in result[key]]
    for key, who in (("quality_only_a", "A"), ("quality_only_b", "B")):
        notes += [f"only in {who}: task {t}" for t in result[key]]
    for note in notes:
        out.print(note, highlight=False, markup=False)
