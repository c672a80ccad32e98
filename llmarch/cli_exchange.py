"""``llmarch results export`` and ``llmarch results import``: runs between machines.

The file format and the merge rule live in ``llmarch.exchange``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmarch import paths
from llmarch.errors import LlmarchError

Db = Annotated[
    Path | None,
    typer.Option(
        help="Results database (default: $LLMARCH_DB or results/llmarch.sqlite)."
    ),
]


def results_export(
    path: Annotated[Path, typer.Argument(help="File to write (JSON Lines).")],
    run: Annotated[
        list[str] | None,
        typer.Option(help="Export only this run id (repeat for more)."),
    ] = None,
    db: Db = None,
) -> None:
    """Write runs with their samples and quality items to one file."""
    from llmarch.cli import _fail, err
    from llmarch.exchange import export_runs
    from llmarch.store import ResultStore

    try:
        store = ResultStore(db or paths.db_path())
        n = export_runs(store, path, run or None)
        store.close()
    except LlmarchError as exc:
        _fail(str(exc))
        return
    err.print(f"exported {n} runs to {path}", highlight=False)


def results_import(
    path: Annotated[Path, typer.Argument(help="A file written by results export.")],
    db: Db = None,
) -> None:
    """Add the file's runs to the database; runs already there are skipped."""
    from llmarch.cli import _fail, out
    from llmarch.exchange import import_runs
    from llmarch.store import ResultStore

    try:
        store = ResultStore(db or paths.db_path())
        counts = import_runs(store, path)
        store.close()
    except LlmarchError as exc:
        _fail(str(exc))
        return
    out.print(
        f"imported {counts.runs_imported} runs ({counts.samples} samples, "
        f"{counts.quality_items} quality items); skipped {counts.runs_skipped} "
        "already present",
        highlight=False,
    )
