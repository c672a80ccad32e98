"""Where llmarch keeps converted weights and results.

``LLMARCH_CACHE_DIR`` moves the cache (default: ``~/.cache/llmarch``, or
``$XDG_CACHE_HOME/llmarch``). ``LLMARCH_DB`` moves the results database
(default: ``results/llmarch.sqlite`` under the current folder) and
``LLMARCH_RESULTS_DIR`` the folder for reports (default: ``results``).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LLMARCH_CACHE_DIR"
DB_ENV = "LLMARCH_DB"
RESULTS_ENV = "LLMARCH_RESULTS_DIR"
DEFAULT_RESULTS_DIR = Path("results")
DB_FILENAME = "llmarch.sqlite"


def cache_dir() -> Path:
    """The folder for assembled GGUF files and converted model folders."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "llmarch"


def results_dir() -> Path:
    """The folder where reports (CSV, Markdown) are written."""
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS_DIR).expanduser()


def db_path() -> Path:
    """The SQLite database that keeps every measurement."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    return results_dir() / DB_FILENAME
