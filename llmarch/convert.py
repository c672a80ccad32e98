"""Child-process entry point for a GGUF conversion (see models.ensure_converted).

    python -m llmarch.convert GGUF_PATH TARGET_FOLDER

Prints one JSON line: ``{"ok": true, "peak_rss_bytes": N}`` or
``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from llmarch.errors import LlmarchError
from llmarch.memory import peak_rss_bytes
from llmarch.models import convert_gguf


def main(argv: list[str]) -> int:
    gguf_path, target = Path(argv[0]), Path(argv[1])
    try:
        convert_gguf(gguf_path, target)
    except LlmarchError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps({"ok": True, "peak_rss_bytes": peak_rss_bytes()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
