"""YAML for files people write (task files, profiles), read the YAML 1.2 way.

PyYAML follows YAML 1.1, where bare ``yes``, ``no``, ``on`` and ``off`` are
booleans: ``choices: [no, yes]`` would arrive as ``[False, True]``. Here only
``true`` and ``false`` are booleans; every other bare word stays a string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def loads(text: str) -> Any:
    """Parse YAML text (safe: no Python objects)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_file(path: Path) -> Any:
    """Parse a YAML file; OSError and yaml.YAMLError reach the caller."""
    return loads(path.read_text(encoding="utf-8"))
