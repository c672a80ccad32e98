"""Moving results between machines: export runs to a file, import them elsewhere.

The file is JSON Lines. The first line is a header::

    {"format": "llmarch-results", "version": 1, "schema": 1, ...}

and every further line is one run with everything stored for it::

    {"run": {...runs row...}, "samples": [...], "quality_items": [...]}

Columns are kept as the database stores them (JSON columns as their text), so
an import reproduces the rows exactly, apart from the ``id`` counters of
samples and items, which the receiving database assigns. An import adds each
run whose ``run_id`` the database does not hold yet and skips the others, so
files from many machines (or the same file twice) merge into one database.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmarch import __version__
from llmarch.errors import ConfigError
from llmarch.store import SCHEMA_VERSION, ResultStore, now_iso

FORMAT = "llmarch-results"
VERSION = 1
_TABLES = ("samples", "quality_items")


@dataclass
class ImportCounts:
    """What an import added and skipped."""

    runs_imported: int = 0
    runs_skipped: int = 0
    samples: int = 0
    quality_items: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _rows(store: ResultStore, table: str, run_id: str) -> list[dict[str, Any]]:
    cur = store.conn.execute(
        f"SELECT * FROM {table} WHERE run_id = ? ORDER BY id", (run_id,)
    )
    rows = []
    for row in cur:
        item = dict(row)
        item.pop("id", None)
        rows.append(item)
    return rows


def export_runs(
    store: ResultStore, path: Path, run_ids: list[str] | None = None
) -> int:
    """Write the runs (all, or those named) to ``path``; return how many."""
    if run_ids:
        missing = [r for r in run_ids if store.run(r) is None]
        if missing:
            raise ConfigError(
                f"no run {missing[0]} in {store.path}; 'llmarch results' lists them"
            )
        wanted = run_ids
    else:
        cur = store.conn.execute("SELECT run_id FROM runs ORDER BY started_at, run_id")
        wanted = [r["run_id"] for r in cur]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "schema": SCHEMA_VERSION,
        "exported_at": now_iso(),
        "llmarch_version": __version__,
        "source": str(store.path),
        "runs": len(wanted),
    }
    try:
        with Path(path).open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(header) + "\n")
            for run_id in wanted:
                run = store.conn.execute(
                    "SELECT * FROM runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                record = {"run": dict(run)}
                for table in _TABLES:
                    record[table] = _rows(store, table, run_id)
                fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path} ({exc.strerror}); pass a writable file path"
        ) from exc
    return len(wanted)


def _columns(store: ResultStore, table: str) -> set[str]:
    return {row[1] for row in store.conn.execute(f"PRAGMA table_info({table})")}


def _insert(
    store: ResultStore, table: str, row: dict[str, Any], have: set[str]
) -> None:
    keep = {k: v for k, v in row.items() if k in have and k != "id"}
    names = ", ".join(keep)
    marks = ", ".join("?" * len(keep))
    store.conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(keep.values())
    )


def _records(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not an llmarch export (not text); make one with "
            "'llmarch results export PATH'"
        ) from exc
    try:
        parsed = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} line {exc.lineno} is not JSON; pass a file written by "
            "'llmarch results export'"
        ) from exc
    if not parsed or not isinstance(parsed[0], dict):
        raise ConfigError(f"{path} is empty; pass a file written by 'results export'")
    header = parsed[0]
    if header.get("format") != FORMAT:
        raise ConfigError(
            f"{path} is not an llmarch export (no '{FORMAT}' header); make one "
            "with 'llmarch results export PATH'"
        )
    if int(header.get("version", 0)) > VERSION:
        raise ConfigError(
            f"{path} was written by a newer llmarch (export version "
            f"{header['version']}); upgrade llmarch to import it"
        )
    records = parsed[1:]
    for n, record in enumerate(records, start=2):
        if not isinstance(record, dict) or "run_id" not in (record.get("run") or {}):
            raise ConfigError(f"{path} line {n} holds no run; the file is damaged")
    return header, records


def import_runs(store: ResultStore, path: Path) -> ImportCounts:
    """Add the file's runs that ``store`` lacks (by run id); skip the rest."""
    _header, records = _records(path)
    counts = ImportCounts()
    have = {table: _columns(store, table) for table in ("runs", *_TABLES)}
    for record in records:
        run = record["run"]
        if store.run(run["run_id"]) is not None:
            counts.runs_skipped += 1
            continue
        try:
            with store.conn:  # one transaction per run: all of it or none
                _insert(store, "runs", run, have["runs"])
                for table in _TABLES:
                    for row in record.get(table) or []:
                        _insert(store, table, row, have[table])
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot import run {run['run_id']} from {path} ({exc}); the file "
                "is damaged or from an incompatible llmarch"
            ) from exc
        counts.runs_imported += 1
        counts.samples += len(record.get("samples") or [])
        counts.quality_items += len(record.get("quality_items") or [])
    return counts
