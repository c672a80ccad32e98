"""What the llama.cpp backend needs around llama-cpp-python: the import, a
tokenizer adapter, the KV-cache allocation llama.cpp reports, GGUF checks.

llama.cpp allocates its KV cache once, when the context is made, and says how
much in its log: one line per cache, ``size = 3.00 MiB ( 1024 cells, 3
layers, 1/1 seqs), K (f16): 1.50 MiB, V (f16): 1.50 MiB``. A model with
sliding-window layers (Gemma 3) gets two caches, one for the full layers with
``n_ctx`` cells and a smaller one for the windowed layers. llmarch reads those
lines while loading; they are what the process really holds.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmarch.errors import BackendError, ModelError

INSTALL = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python[server]'"
GGUF_MAGIC = b"GGUF"

# llama.cpp's KV cache line, e.g. "llama_kv_cache: size =    3.00 MiB (  1024
# cells,   3 layers,  1/1 seqs), K (f16):    1.50 MiB, V (f16):    1.50 MiB".
_KV_LINE = re.compile(
    r"size\s*=\s*(?P<mib>[\d.]+) MiB \(\s*(?P<cells>\d+) cells,\s*(?P<layers>\d+) "
    r"layers,.*?K \((?P<k>\w+)\):\s*(?P<k_mib>[\d.]+) MiB, "
    r"V \((?P<v>\w+)\):\s*(?P<v_mib>[\d.]+) MiB"
)
# Bytes per element of the cache types llama.cpp offers for K and V (block
# types: bytes per block / elements per block).
TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def import_llama_cpp() -> Any:
    """The llama_cpp module, or one line saying how to install it here."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(
            "the llamacpp backend needs llama-cpp-python, built for this CPU: "
            f"{INSTALL}"
        ) from exc
    except OSError as exc:  # the shared library does not load
        raise BackendError(
            f"llama-cpp-python is installed but its library does not load ({exc}); "
            f"rebuild it: {INSTALL} --force-reinstall --no-cache-dir"
        ) from exc
    return llama_cpp


def check_gguf(path: Path) -> None:
    """Refuse a file that is not a GGUF before llama.cpp reads it."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(
            f"cannot read {path} ({exc.strerror}); check the file."
        ) from exc
    if magic != GGUF_MAGIC:
        raise ModelError(
            f"{path} is not a GGUF file (it does not start with 'GGUF'); the "
            "llamacpp backend runs GGUF files only."
        )


@dataclass(frozen=True)
class KVAllocation:
    """One KV cache as llama.cpp allocated it."""

    cells: int  # token slots per layer
    layers: int
    type_k: str
    type_v: str
    mib: float  # the size llama.cpp printed, MiB rounded to 0.01

    def bytes(self, k_elements: int, v_elements: int) -> int:
        """Bytes, from the per-cell elements of one layer's K and V."""
        per_cell = (
            k_elements * TYPE_BYTES[self.type_k] + v_elements * TYPE_BYTES[self.type_v]
        )
        return int(round(self.cells * self.layers * per_cell))


def parse_kv_lines(log_text: str) -> list[KVAllocation]:
    """The KV caches in a llama.cpp log, in the order it made them."""
    return [
        KVAllocation(
            cells=int(m["cells"]),
            layers=int(m["layers"]),
            type_k=m["k"],
            type_v=m["v"],
            mib=float(m["mib"]),
        )
        for m in _KV_LINE.finditer(log_text)
    ]


@contextmanager
def captured_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Collect what llama.cpp logs inside the block (and show none of it)."""
    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        from llama_cpp import _logger

        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


class LlamaTokenizer:
    """llama.cpp's own tokenizer, seen as the scoring rules and prompts need it.

    It answers both ``TokenizerLike`` (``encode``, ``encode_offsets``, BOS
    facts) and the slice of the transformers tokenizer call that
    ``llmarch.prompts`` uses. Special tokens written in a text are parsed, as
    transformers does.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        bos, eos = llm.token_bos(), llm.token_eos()
        self.bos_id: int | None = bos if bos >= 0 else None
        self.eos_id: int | None = eos if eos >= 0 else None
        plain = llm.tokenize(b"a", add_bos=False, special=True)
        default = llm.tokenize(b"a", add_bos=True, special=True)
        self.adds_bos = bool(
            self.bos_id is not None
            and len(default) > len(plain)
            and default[0] == self.bos_id
        )
        self.bos_token_id = self.bos_id if self.adds_bos else None

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and character spans, from each token's bytes.

        Where the pieces do not spell the text exactly (a tokenizer that adds
        a leading space), there are no offsets and the scoring rules split
        the request by comparing token sequences instead.
        """
        ids = self.encode(text)
        raw = text.encode()
        pieces = [self.piece(t) for t in ids]
        if b"".join(pieces) != raw:
            raise NotImplementedError
        # byte position -> index of the character it belongs to
        char_at = []
        for i, ch in enumerate(text):
            char_at += [i] * len(ch.encode())
        spans, at = [], 0
        for piece in pieces:
            if not piece:
                spans.append((char_at[at] if at < len(raw) else len(text),) * 2)
                continue
            start, end = at, at + len(piece)
            spans.append((char_at[start], char_at[end - 1] + 1))
            at = end
        return ids, spans  # type: ignore[return-value]

    def piece(self, token: int) -> bytes:
        """The bytes of one token (llama-cpp-python's own helper keeps the
        padding of its 32-byte buffer, so the C function is called here)."""
        import llama_cpp

        vocab = self.llm._model.vocab
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, True)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def __call__(
        self, text: str, add_special_tokens: bool = True
    ) -> dict[str, list[int]]:
        ids = self.encode(text)
        if add_special_tokens and self.adds_bos:
            ids = [int(self.bos_id)] + ids  # type: ignore[arg-type]
        return {"input_ids": ids}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        data = self.llm.detokenize(list(ids), special=not skip_special_tokens)
        return bytes(data).decode("utf-8", errors="replace")


def logits_row(llama_cpp: Any, ctx: Any, index: int, n_vocab: int) -> Any:
    """The logits llama.cpp computed for output ``index`` of the last decode."""
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(ctx, index)
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,))


def fill_batch(batch: Any, tokens: list[int], first_pos: int, logits_from: int) -> None:
    """Put ``tokens`` (positions from ``first_pos``) in a llama_batch of one
    sequence; outputs are requested for the tokens at index >= ``logits_from``.
    """
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = first_pos + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = i >= logits_from
