"""``llmarch inspect``: a model's architecture in numbers, without loading it.

Three readers give the same transformers config object: a catalog entry, a
local folder's ``config.json`` and a GGUF file's metadata. Fields a reader
cannot know are listed in ``unknown`` (the transformers default stands in
for them) rather than guessed silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmarch import arch
from llmarch.catalog import CatalogEntry, load_catalog, unknown_model_message
from llmarch.errors import ConfigError, ModelError

GB = 10**9
BUDGETS_GB = (8, 16, 24, 48, 80, 141)
DTYPE_BYTES = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "int8": 1.0,
    "4bit": 0.5,
}
WEIGHT_DTYPES = ("float32", "bfloat16", "int8", "4bit")
KV_DTYPES = ("float32", "bfloat16", "float16", "int8")

# GGUF metadata keys (after the architecture prefix) that the mapping of
# transformers leaves out but that decide sizes.
_GGUF_MODEL_TYPES = {"gemma3": "gemma3_text", "gemma4": "gemma4_text"}


@dataclass
class ModelConfig:
    """A config from one of the three readers, with what it could not know."""

    name: str
    source: str
    config: Any
    entry: CatalogEntry | None = None
    unknown: list[str] = field(default_factory=list)


def read_model(spec: str) -> ModelConfig:
    """Read the config of a catalog id, a model folder or a GGUF file."""
    catalog = load_catalog()
    path = Path(spec).expanduser()
    if spec in catalog:
        return _from_catalog(catalog[spec])
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}. Check the path.")
        return _from_gguf(path)
    if path.is_dir():
        return _from_folder(path)
    raise ModelError(unknown_model_message(spec))


def _auto_config(model_type: str, fields: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.for_model(model_type, **fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"transformers cannot build a '{model_type}' config from these fields: "
            f"{exc}"
        ) from exc


def _from_catalog(entry: CatalogEntry) -> ModelConfig:
    if not entry.config:
        raise ModelError(f"the catalog has no config figures for '{entry.id}' yet")
    fields = dict(entry.config)
    model_type = fields.pop("model_type")
    return ModelConfig(
        name=entry.id,
        source=f"catalog ({entry.config_source or 'no source'})",
        config=_auto_config(model_type, fields),
        entry=entry,
    )


def _from_folder(path: Path) -> ModelConfig:
    from transformers import AutoConfig

    if not (path / "config.json").is_file():
        raise ModelError(
            f"{path} holds no config.json; pass a Hugging Face model folder."
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise ModelError(f"cannot read {path}/config.json: {exc}") from exc
    return ModelConfig(name=path.name, source=f"config.json in {path}", config=config)


def _from_gguf(path: Path) -> ModelConfig:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    from llmarch.gguf_meta import read_header

    try:
        header = read_header(path)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path} is not a readable GGUF file ({exc}).") from exc

    gguf_arch = header.metadata.get("general.architecture")
    mapping: dict[str, Any] | None = GGUF_CONFIG_MAPPING.get(str(gguf_arch))  # type: ignore[assignment]
    if mapping is None:
        raise arch.UnsupportedArchitecture(
            f"GGUF architecture '{gguf_arch}' has no config mapping in transformers"
        )
    fields: dict[str, Any] = {}
    for suffix, hf_name in mapping.items():
        key = f"{gguf_arch}.{suffix}"
        if hf_name and key in header.metadata:
            fields[hf_name] = header.metadata[key]
    if "vocab_size" not in fields and "tokenizer.ggml.tokens" in header.array_lengths:
        fields["vocab_size"] = header.array_lengths["tokenizer.ggml.tokens"]
    fields["tie_word_embeddings"] = "output.weight" not in header.tensors

    model_type = _GGUF_MODEL_TYPES.get(str(gguf_arch), str(gguf_arch))
    config = _auto_config(model_type, fields)
    unknown = []
    if getattr(config, "layer_types", None) and "layer_types" not in fields:
        # GGUF stores the window size, not which layers use it.
        unknown.append("layer_types (which layers slide: the transformers default)")
    return ModelConfig(
        name=path.stem,
        source=f"GGUF metadata of {path}",
        config=config,
        unknown=unknown,
    )


# -- the report ----------------------------------------------------------------


def _kv_bytes_per_element(kv_dtype: str) -> int:
    if kv_dtype not in KV_DTYPES:
        raise ConfigError(
            f"--kv-dtype must be one of {', '.join(KV_DTYPES)}, not '{kv_dtype}'"
        )
    return int(DTYPE_BYTES[kv_dtype])


def free_memory() -> dict[str, int]:
    """This machine's free RAM, and free GPU memory when CUDA is visible."""
    import psutil

    free = {"this machine's free RAM": int(psutil.virtual_memory().available)}
    try:
        import torch

        if torch.cuda.is_available():
            free["this machine's free VRAM"] = int(torch.cuda.mem_get_info()[0])
    except ImportError:
        pass
    return free


def check_options(
    *, context: int, batch: int, weights_dtype: str, kv_dtype: str
) -> None:
    """Refuse option values ``report`` cannot use, naming the option."""
    if context < 1 or batch < 1:
        raise ConfigError("--context and --batch must be at least 1")
    if weights_dtype not in WEIGHT_DTYPES:
        raise ConfigError(
            f"--weights-dtype must be one of {', '.join(WEIGHT_DTYPES)}, "
            f"not '{weights_dtype}'"
        )
    _kv_bytes_per_element(kv_dtype)


def report(
    model: ModelConfig,
    *,
    context: int,
    batch: int,
    weights_dtype: str,
    kv_dtype: str,
    free_memory: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Every figure ``inspect`` shows for one model, as plain data (bytes, counts)."""
    check_options(
        context=context, batch=batch, weights_dtype=weights_dtype, kv_dtype=kv_dtype
    )
    kv_elem = _kv_bytes_per_element(kv_dtype)
    a = arch.from_config(model.config)
    entry = model.entry

    weights = {d: int(a.params_total * DTYPE_BYTES[d]) for d in WEIGHT_DTYPES}
    kv = a.kv_bytes(tokens=context, batch=batch, bytes_per_element=kv_elem)
    need = weights[weights_dtype] + kv
    budgets = {f"{gb} GB": need <= gb * GB for gb in BUDGETS_GB}
    for label, free in (free_memory or {}).items():
        budgets[label] = need <= free

    first = a.layers[0]
    return {
        "model": model.name,
        "source": model.source,
        "unknown": model.unknown,
        "model_type": a.model_type,
        "attention": a.attention_kind(),
        "layout": a.window_layout(),
        "layers": len(a.layers),
        "hidden_size": a.hidden_size,
        "query_heads": first.q_heads,
        "kv_heads": sorted({layer.kv_heads for layer in a.layers}),
        "head_dim": sorted({layer.head_dim for layer in a.layers}),
        "vocab_size": a.vocab_size,
        "context_length": a.context_length,
        "tied_embeddings": a.tied_embeddings,
        "experts": a.experts,
        "experts_per_token": a.experts_per_token,
        "shared_experts": a.shared_experts,
        "positional": a.positional,
        "norm": a.norm,
        "activation": a.activation,
        "params_total": a.params_total,
        "params_active": a.params_active,
        "params_embedding": a.params_embedding,
        "params_active_compute": a.params_active_compute,
        "params_published": entry.params_published if entry else None,
        "params_active_published": entry.params_active_published if entry else None,
        "params_source": entry.params_source if entry else None,
        "weight_bytes": weights,
        "kv_dtype": kv_dtype,
        "kv_bytes_per_token": a.kv_bytes_per_token(bytes_per_element=kv_elem),
        "context": context,
        "batch": batch,
        "kv_bytes": kv,
        "kv_bytes_mha": a.mha_kv_bytes(
            tokens=context, batch=batch, bytes_per_element=kv_elem
        ),
        "weights_dtype": weights_dtype,
        "memory_needed_bytes": need,
        "fits": budgets,
        "notes": a.notes,
        "license": entry.license if entry else None,
        "open_weights": entry.open_weights if entry else None,
        "hf_repo": entry.hf_repo if entry else None,
        "api_ids": entry.api_ids if entry else {},
    }
