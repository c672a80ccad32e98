"""The results database (SQLite): one row per run, one row per generation.

Each sample is committed the moment it is measured, so an interrupted run
keeps everything it measured; its run row says ``interrupted``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmarch.backends.base import GenerationSample
from llmarch.errors import ConfigError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    model TEXT NOT NULL,
    model_source TEXT,
    backend TEXT NOT NULL,
    device TEXT,
    dtype TEXT,
    llmarch_version TEXT,
    settings_json TEXT,
    metadata_json TEXT,
    load_json TEXT
);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    recorded_at TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    new_tokens INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    repeat INTEGER NOT NULL,
    is_warmup INTEGER NOT NULL,
    ttft_s REAL,
    tpot_s REAL,
    e2e_s REAL,
    prefill_tps REAL,
    decode_tps REAL,
    kv_tokens INTEGER,
    kv_bytes_measured INTEGER,
    kv_bytes_computed INTEGER,
    peak_memory_bytes INTEGER,
    token_times_json TEXT,
    output_tokens INTEGER,
    tokens_source TEXT,
    concurrency INTEGER,
    rate REAL,
    error TEXT,
    text TEXT,
    prefill_peak_bytes INTEGER,
    decode_peak_bytes INTEGER
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id);
CREATE TABLE IF NOT EXISTS quality_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    kind TEXT NOT NULL,
    item_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    prompt TEXT,
    choices_json TEXT,
    gold_json TEXT,
    prediction_json TEXT,
    credit REAL,
    tied INTEGER,
    prediction_norm_json TEXT,
    credit_norm REAL,
    tied_norm INTEGER,
    scores_json TEXT,
    error TEXT,
    seconds REAL,
    UNIQUE (run_id, task, item_id)
);
CREATE INDEX IF NOT EXISTS quality_items_run ON quality_items(run_id, task);
"""

_ADDED_SAMPLE_COLUMNS = {
    "output_tokens": "INTEGER",
    "tokens_source": "TEXT",
    "concurrency": "INTEGER",
    "rate": "REAL",
    "error": "TEXT",
    "text": "TEXT",
    "prefill_peak_bytes": "INTEGER",
    "decode_peak_bytes": "INTEGER",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A sortable, readable id: UTC time plus 6 random hex digits."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


class ResultStore:
    """An SQLite file holding runs and their samples.

    >>> store = ResultStore(Path("results/llmarch.sqlite"))
    >>> run_id = store.start_run(model="gemma-3-270m", backend="transformers")
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path))
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.executescript(SCHEMA)
            self._add_missing_columns()
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot use {self.path} as the results database ({exc}); "
                "pass a writable SQLite path with --db or LLMARCH_DB"
            ) from exc

    def _add_missing_columns(self) -> None:
        """Bring a database written by an earlier llmarch up to this schema."""
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(samples)")}
        for name, kind in _ADDED_SAMPLE_COLUMNS.items():
            if name not in have:
                self.conn.execute(f"ALTER TABLE samples ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.conn:  # commits, or rolls back on error
            yield self.conn

    def start_run(
        self,
        *,
        model: str,
        backend: str,
        model_source: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        llmarch_version: str | None = None,
        settings: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Insert a run in state ``running`` and return its id."""
        run_id = run_id or new_run_id()
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (run_id, started_at, status, model, model_source, "
                "backend, device, dtype, llmarch_version, settings_json, "
                "metadata_json) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now_iso(),
                    model,
                    model_source,
                    backend,
                    device,
                    dtype,
                    llmarch_version,
                    json.dumps(settings or {}),
                    json.dumps(metadata or {}),
                ),
            )
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; dict values for ``*_json`` columns are encoded."""
        allowed = {
            "finished_at",
            "status",
            "device",
            "dtype",
            "metadata_json",
            "load_json",
            "model_source",
        }
        if not set(fields) <= allowed:
            raise ValueError(f"cannot update {set(fields) - allowed}")
        values = [
            json.dumps(v) if k.endswith("_json") else v for k, v in fields.items()
        ]
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._tx() as c:
            c.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = ?", (*values, run_id)
            )

    def finish_run(self, run_id: str, status: str) -> None:
        self.update_run(run_id, status=status, finished_at=now_iso())

    def add_sample(
        self, run_id: str, sample: GenerationSample, *, repeat: int, is_warmup: bool
    ) -> dict[str, Any]:
        """Commit one generation's figures now; return the stored row."""
        timings = sample.timings
        empty = dict.fromkeys(
            ("ttft_s", "tpot_s", "e2e_s", "prefill_tps", "decode_tps")
        )
        row = {
            "prompt_tokens": sample.prompt_tokens,
            "new_tokens": sample.new_tokens,
            "batch": sample.batch,
            "repeat": repeat,
            "is_warmup": int(is_warmup),
            **(timings.as_dict() if timings is not None else empty),
            "kv_tokens": sample.kv_tokens,
            "kv_bytes_measured": sample.kv_bytes_measured,
            "kv_bytes_computed": sample.kv_bytes_computed,
            "peak_memory_bytes": sample.peak_memory_bytes,
            "output_tokens": sample.output_tokens,
            "tokens_source": sample.tokens_source,
            "concurrency": sample.concurrency,
            "rate": sample.rate,
            "error": sample.error,
            "text": sample.text,
            "prefill_peak_bytes": sample.prefill_peak_bytes,
            "decode_peak_bytes": sample.decode_peak_bytes,
        }
        relative = [round(t - sample.t0, 9) for t in sample.token_times]
        with self._tx() as c:
            c.execute(
                f"INSERT INTO samples (run_id, recorded_at, {', '.join(row)}, "
                f"token_times_json) VALUES (?, ?, {', '.join('?' * len(row))}, ?)",
                (run_id, now_iso(), *row.values(), json.dumps(relative)),
            )
        return row

    def add_items(
        self,
        run_id: str,
        task: str,
        kind: str,
        records: list[dict[str, Any]],
        *,
        seconds: float | None = None,
    ) -> None:
        """Commit the records of scored quality items (one transaction)."""
        rows = [
            (
                run_id,
                task,
                kind,
                str(r["item_id"]),
                now_iso(),
                r.get("prompt"),
                json.dumps(r.get("choices")),
                json.dumps(r.get("gold")),
                json.dumps(r.get("prediction")),
                r.get("credit"),
                None if r.get("tied") is None else int(r["tied"]),
                json.dumps(r.get("prediction_norm")),
                r.get("credit_norm"),
                None if r.get("tied_norm") is None else int(r["tied_norm"]),
                json.dumps(r.get("scores")),
                r.get("error"),
                seconds,
            )
            for r in records
        ]
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO quality_items (run_id, task, kind, item_id, "
                "recorded_at, prompt, choices_json, gold_json, prediction_json, "
                "credit, tied, prediction_norm_json, credit_norm, tied_norm, "
                "scores_json, error, seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def item_ids(self, run_id: str, task: str) -> set[str]:
        cur = self.conn.execute(
            "SELECT item_id FROM quality_items WHERE run_id = ? AND task = ?",
            (run_id, task),
        )
        return {r[0] for r in cur}

    def item_tasks(self, run_id: str) -> list[tuple[str, str]]:
        """(task, kind) of the run's items, in the order first scored."""
        cur = self.conn.execute(
            "SELECT task, kind, MIN(id) AS first FROM quality_items WHERE run_id = ? "
            "GROUP BY task, kind ORDER BY first",
            (run_id,),
        )
        return [(r["task"], r["kind"]) for r in cur]

    def items(self, run_id: str, task: str | None = None) -> list[dict[str, Any]]:
        """Stored item records, JSON columns decoded (``choices``, ``scores``...)."""
        sql = "SELECT * FROM quality_items WHERE run_id = ?"
        args: tuple[Any, ...] = (run_id,)
        if task is not None:
            sql += " AND task = ?"
            args += (task,)
        out = []
        for row in self.conn.execute(sql + " ORDER BY id", args):
            item = dict(row)
            item.pop("id")
            for key in list(item):
                if key.endswith("_json"):
                    item[key[:-5]] = json.loads(item.pop(key) or "null")
            out.append(item)
        return out

    def delete_run(self, run_id: str) -> dict[str, int]:
        """Delete a run with its samples and quality items; return what went."""
        with self._tx() as c:
            samples = c.execute("DELETE FROM samples WHERE run_id = ?", (run_id,))
            items = c.execute("DELETE FROM quality_items WHERE run_id = ?", (run_id,))
            runs = c.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            return {
                "runs": runs.rowcount,
                "samples": samples.rowcount,
                "quality_items": items.rowcount,
            }

    def delete_samples(self, run_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM samples WHERE run_id = ?", (run_id,))

    def resumable(self, **identity: Any) -> dict[str, Any] | None:
        """The latest unfinished run with exactly these columns and settings."""
        settings = json.dumps(identity.pop("settings"), sort_keys=True)
        where = " AND ".join(f"{k} IS ?" for k in identity)
        cur = self.conn.execute(
            "SELECT run_id, settings_json FROM runs WHERE status != 'completed' "
            f"AND {where} ORDER BY started_at DESC, run_id DESC",
            tuple(identity.values()),
        )
        for row in cur.fetchall():
            stored = json.loads(row["settings_json"] or "{}")
            if json.dumps(stored, sort_keys=True) == settings:
                return self.run(row["run_id"])
        return None

    def run(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        found = cur.fetchone()
        if found is None:
            return None
        out = dict(found)
        for key in ("settings_json", "metadata_json", "load_json"):
            out[key[:-5]] = json.loads(out.pop(key) or "null")
        return out

    def samples(
        self, run_id: str, *, include_warmup: bool = False
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM samples WHERE run_id = ?"
        if not include_warmup:
            sql += " AND is_warmup = 0"
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY id", (run_id,))]

    def runs(self) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT run_id FROM runs ORDER BY started_at, run_id")
        return [self.run(r["run_id"]) for r in cur.fetchall()]  # type: ignore[misc]
