"""A fast reader of a GGUF file's header: metadata and the tensor table.

``gguf.GGUFReader`` maps every array item (262,144 tokenizer strings for
Gemma) into its own numpy view, which takes seconds; llmarch needs only the
scalar metadata, array lengths and tensor shapes, so it reads the header
itself. Layout (GGUF v2/v3, little-endian): magic ``GGUF``, version (u32),
tensor count (u64), metadata count (u64), the metadata pairs, then one entry
per tensor (name, dimensions, type, offset).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass
class GGUFHeader:
    """Metadata (arrays replaced by their length) and tensor shapes."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def n_elements(self) -> int:
        total = 0
        for shape in self.tensors.values():
            count = 1
            for dim in shape:
                count *= dim
            total += count
        return total


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("file ends inside the GGUF header")
    return struct.unpack(fmt, data)[0]


def _length(fh: BinaryIO) -> int:
    """A length or count field, checked against what is left of the file."""
    length = _read(fh, "<Q")
    here = fh.tell()
    end = fh.seek(0, 2)
    fh.seek(here)
    if length > end - here:
        raise ValueError("a length in the GGUF header runs past the end of the file")
    return length


def _string(fh: BinaryIO) -> str:
    length = _length(fh)
    return fh.read(length).decode("utf-8", errors="replace")


def _value(fh: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(fh, _SCALARS[kind])
    if kind == _STRING:
        return _string(fh)
    raise ValueError(f"unknown GGUF value type {kind}")


def _skip_array(fh: BinaryIO, kind: int, count: int) -> None:
    if kind in _SCALARS:
        fh.seek(struct.calcsize(_SCALARS[kind]) * count, 1)
    elif kind == _STRING:
        for _ in range(count):
            fh.seek(_length(fh), 1)
    elif kind == _ARRAY:
        for _ in range(count):
            inner, n = _read(fh, "<I"), _length(fh)
            _skip_array(fh, inner, n)
    else:
        raise ValueError(f"unknown GGUF array type {kind}")


def read_header(path: Path, *, small_arrays: int = 1024) -> GGUFHeader:
    """Read metadata and tensor shapes; arrays up to ``small_arrays`` items are kept."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError("not a GGUF file (bad magic)")
        header = GGUFHeader(version=_read(fh, "<I"))
        if header.version not in (2, 3):
            raise ValueError(f"GGUF version {header.version} is not supported (2 or 3)")
        n_tensors, n_kv = _length(fh), _length(fh)
        for _ in range(n_kv):
            key = _string(fh)
            kind = _read(fh, "<I")
            if kind == _ARRAY:
                inner, count = _read(fh, "<I"), _length(fh)
                header.array_lengths[key] = count
                if count <= small_arrays and inner in _SCALARS:
                    header.metadata[key] = [_value(fh, inner) for _ in range(count)]
                else:
                    _skip_array(fh, inner, count)
            else:
                header.metadata[key] = _value(fh, kind)
        for _ in range(n_tensors):
            name = _string(fh)
            n_dims = _read(fh, "<I")
            if n_dims > 8:
                raise ValueError(f"tensor {name!r} claims {n_dims} dimensions")
            dims = tuple(_read(fh, "<Q") for _ in range(n_dims))
            _read(fh, "<I")  # type
            _read(fh, "<Q")  # offset
            header.tensors[name] = dims
    return header
