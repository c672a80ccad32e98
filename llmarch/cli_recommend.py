"""``llmarch recommend`` and ``llmarch profiles``: wiring and rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from llmarch import paths
from llmarch.errors import LlmarchError
from llmarch.recommend import short_name

profiles_app = typer.Typer(
    help="List the use-case profiles, or show one.",
    invoke_without_command=True,
    no_args_is_help=False,
)

GB = 1e9


def _consoles() -> tuple[Any, Any, Any]:
    from llmarch.cli import _fail, err, out

    return out, err, _fail


@profiles_app.callback()
def profiles_list(ctx: typer.Context) -> None:
    """List the built-in use-case profiles."""
    if ctx.invoked_subcommand is not None:
        return
    from llmarch.profiles import PROFILES_DIR, builtin_profiles

    out, _, fail = _consoles()
    try:
        profiles = builtin_profiles()
    except LlmarchError as exc:
        fail(str(exc))
        return
    table = Table(title=f"use-case profiles ({PROFILES_DIR})", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    table.add_column("description", ratio=3)
    table.add_column("constraints", ratio=2)
    for p in profiles:
        limits = {
            k: v
            for k, v in p.constraints.model_dump().items()
            if v not in (None, False, {}) and k != "ttft_percentile"
        }
        table.add_row(
            p.name, p.description, ", ".join(f"{k}={v}" for k, v in limits.items())
        )
    out.print(table)


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="A profile name or a YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print one profile, with every default filled in."""
    import yaml

    from llmarch.profiles import get_profile

    out, _, fail = _consoles()
    try:
        path = Path(name) if name.endswith((".yaml", ".yml")) else None
        profile = get_profile(None if path else name, path)
    except LlmarchError as exc:
        fail(str(exc))
        return
    data = profile.model_dump()
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(f"# {profile.path}", highlight=False)
        text = yaml.safe_dump(data, sort_keys=False, width=1000).rstrip()
        out.print(text, highlight=False, markup=False, soft_wrap=True)


# -- recommend ---------------------------------------------------------------------


def _value(f: Any, scale: float = 1.0, digits: int = 2) -> str:
    if f.basis == "n/a" and f.value in (None, 0.0) and f.note == "served remotely":
        return "remote"
    if f.value is None:
        return "?"
    mark = "~" if f.basis == "estimated" else ""
    v = f.value * scale
    if abs(v) >= 1000:
        return f"{mark}{v:,.0f}"
    if abs(v) >= 100 and digits > 1:
        digits = 1
    return f"{mark}{v:,.{digits}f}"


def verdict(r: Any, *, short: bool) -> str:
    """ "pass", or the first failed constraint with its value and limit."""
    fail = r.first_failure
    if fail is None:
        return "pass"
    name = short_name(fail.name)
    text = fail.text
    if short and text.startswith("unknown"):
        text = "unknown"
    return f"{name}: {text}"


def table_rows(
    result: dict[str, Any], *, short: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows shared by the terminal table and the Markdown."""
    profile = result["profile"]
    pct = profile.constraints.ttft_percentile
    backends = {r.candidate.backend for r in result["ranked"]}
    headers = [
        "#",
        "model",
        "memory (GB)",
        "decode (tok/s)",
        f"TTFT {pct} (ms)",
        "quality (%)",
        "score",
        "front",
        "verdict",
    ]
    rows = []
    for r in result["ranked"]:
        c = r.candidate
        name = c.model if len(backends) == 1 else f"{c.model} · {c.backend}"
        rows.append(
            [
                str(r.rank) if r.rank else "–",
                name,
                _value(c.memory_bytes, 1 / GB),
                _value(c.decode_tps, 1, 1),
                _value(c.ttft_s, 1e3, 0),
                _value(r.quality, 100, 1) if r.quality.basis != "n/a" else "–",
                f"{r.score:.2f}" if r.score is not None else "–",
                "◆" if r.pareto else "",
                verdict(r, short=short),
            ]
        )
    return headers, rows


TERMINAL_HEADERS = {
    "memory (GB)": "mem\nGB",
    "decode (tok/s)": "decode\ntok/s",
    "quality (%)": "quality\n%",
}

FOOTNOTE = (
    "~ estimated (catalog architecture and this machine's measured runs); "
    "? unknown; ◆ on the quality / speed / memory Pareto front; GB = 10^9 bytes"
)


def markdown(result: dict[str, Any]) -> str:
    profile = result["profile"]
    headers, rows = table_rows(result)
    lines = [f"# Recommendation: {profile.name}", ""]
    if profile.description:
        lines += [profile.description, ""]
    lines += [
        result["explanation"],
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(x.replace("|", "\\|") for x in r) + " |" for r in rows]
    lines += ["", FOOTNOTE, ""]
    return "\n".join(lines)


def recommend(
    use_case: Annotated[
        str | None,
        typer.Option(help="A built-in profile ('llmarch profiles' lists them)."),
    ] = None,
    profile_path: Annotated[
        Path | None, typer.Option("--profile", help="Your own profile YAML file.")
    ] = None,
    max_memory_gb: Annotated[
        float | None, typer.Option(help="Override: most memory, GB (10^9 bytes).")
    ] = None,
    min_decode_tps: Annotated[
        float | None, typer.Option(help="Override: least decode tokens/s.")
    ] = None,
    max_ttft_ms: Annotated[
        float | None, typer.Option(help="Override: most TTFT at the profile's pct.")
    ] = None,
    max_tpot_ms: Annotated[
        float | None, typer.Option(help="Override: most time per output token, ms.")
    ] = None,
    min_context: Annotated[
        int | None, typer.Option(help="Override: least context length, tokens.")
    ] = None,
    max_cost_per_mtok: Annotated[
        float | None, typer.Option(help="Override: most USD per million tokens.")
    ] = None,
    min_quality: Annotated[
        list[str] | None,
        typer.Option(help="Override: TASK=FRACTION, e.g. arc-easy=0.6 (repeatable)."),
    ] = None,
    estimates: Annotated[
        bool,
        typer.Option(help="Include catalog models without results, as estimates."),
    ] = True,
    fmt: Annotated[
        str, typer.Option("--format", help="table or md (Markdown).")
    ] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: Annotated[Path | None, typer.Option(help="Results database.")] = None,
) -> None:
    """Recommend models for a use case from measured results and estimates."""
    from llmarch.candidates import gather, hardware_key
    from llmarch.profiles import get_profile, override, parse_quality_options
    from llmarch.recommend import as_json as to_json
    from llmarch.recommend import recommend as run
    from llmarch.store import ResultStore
    from llmarch.sysinfo import machine_info

    out, err, fail = _consoles()
    try:
        if fmt not in ("table", "md"):
            raise LlmarchError(f"--format must be table or md, not {fmt!r}")
        profile = get_profile(use_case, profile_path)
        profile = override(
            profile,
            max_memory_gb=max_memory_gb,
            min_decode_tps=min_decode_tps,
            max_ttft_ms=max_ttft_ms,
            max_tpot_ms=max_tpot_ms,
            min_context=min_context,
            max_cost_per_mtok=max_cost_per_mtok,
            min_quality=parse_quality_options(min_quality),
        )
        db_path = db or paths.db_path()
        if not db_path.exists():
            err.print(
                f"no results database at {db_path}: only estimates can be shown; "
                "run llmarch bench first",
                highlight=False,
            )
        store = ResultStore(db_path if db_path.exists() else Path(":memory:"))
        machine = machine_info()
        device = "cuda" if machine.get("gpu") else "cpu"
        candidates, _ = gather(
            store, profile, here=hardware_key(machine, device), estimates=estimates
        )
        result = run(candidates, profile)
        store.close()
    except LlmarchError as exc:
        fail(str(exc))
        return
    if as_json:
        out.print_json(json.dumps(to_json(result), default=str))
    elif fmt == "md":
        out.print(markdown(result), highlight=False, markup=False, soft_wrap=True)
    else:
        headers, rows = table_rows(result, short=True)
        table = Table(
            title=f"recommend · {profile.name}",
            box=box.SIMPLE_HEAD,
            caption=FOOTNOTE,
            show_edge=False,
            collapse_padding=True,
        )
        front = headers.index("front")
        headers = headers[:front] + headers[front + 1 :]
        rows = [
            [f"{r[0]}{'◆' if r[front] else ''}", *r[1:front], *r[front + 1 :]]
            for r in rows
        ]
        for h in headers:
            left = h in ("#", "model", "verdict")
            if h.startswith("TTFT"):
                h = h.replace(" (ms)", " ms").replace("TTFT ", "TTFT\n")
            table.add_column(
                TERMINAL_HEADERS.get(h, h),
                justify="left" if left else "right",
                # Names and verdicts wrap so that no figure is ever cut.
                no_wrap=h not in ("verdict", "model"),
                min_width=14 if h == "verdict" else None,
                overflow="fold",
            )
        for row in rows:
            table.add_row(*row)
        out.print(table)
        out.print(result["explanation"], highlight=False)
