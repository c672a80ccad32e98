"""``llmarch inspect``: a model's architecture in numbers, without loading it.

Three readers give the same transformers config object: a catalog entry, a
local folder's ``config.json`` and a GGUF file's metadata. Fields a reader
cannot know are listed in ``unknown`` (the transformers default stands in
for them) rather than guessed silently.
"""

from __future__ import annotations

import json
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


# Fields every size figure rests on; a config.json without them leaves
# transformers' defaults in their place, which inspect reports as unknown.
_CORE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)


def read_model(spec: str) -> ModelConfig:
    """Read the config of a catalog id, a model folder or a GGUF file."""
    catalog = load_catalog()
    if not spec.strip():
        raise ModelError("the model name is empty; pass a catalog id, folder or .gguf")
    path = Path(spec).expanduser()
    key = spec.strip().lower()
    by_repo = {e.hf_repo.lower(): e for e in catalog.values() if e.hf_repo}
    if key in catalog:
        return _from_catalog(catalog[key])
    if key in by_repo and not path.exists():  # the exact hub repo of an entry
        return _from_catalog(by_repo[key])
    if path.is_file() and path.name == "config.json":
        path = path.parent
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}. Check the path.")
        return _from_gguf(path)
    if path.is_dir():
        return _from_folder(path)
    raise ModelError(unknown_model_message(spec))


def _quiet_transformers() -> None:
    """Keep transformers' config validation warnings off the user's screen."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _auto_config(model_type: str, fields: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    _quiet_transformers()
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
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
    _quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(path))
        raw = json.loads((path / "config.json").read_text())
    except (ValueError, OSError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise ModelError(f"cannot read {path}/config.json: {exc}") from exc
    raw = raw.get("text_config") or raw
    aliases = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
    }
    unknown = [
        f"{name} (not in config.json: the transformers default)"
        for name in _CORE_FIELDS
        if name not in raw and aliases.get(name) not in raw
    ]
    return ModelConfig(
        name=path.name, source=f"config.json in {path}", config=config, unknown=unknown
    )


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


def _kv_layout(a: arch.Architecture) -> list[dict[str, Any]]:
    """KV heads and head size per kind of layer, with the count of each."""
    kinds: dict[tuple[Any, ...], int] = {}
    for layer in a.layers:
        key = (
            layer.attention,
            layer.kv_heads,
            layer.head_dim,
            layer.stores_kv,
            layer.mla_latent,
        )
        kinds[key] = kinds.get(key, 0) + 1
    return [
        {
            "attention": k[0],
            "layers": n,
            "kv_heads": k[1],
            "head_dim": k[2],
            "stores_kv": k[3],
            "mla_latent": k[4],
        }
        for k, n in kinds.items()
    ]


def check_options(
    *, context: int, batch: int, weights_dtype: str, kv_dtype: str
) -> None:
    """Refuse option values ``report`` cannot use, naming the option."""
    if context < 1:
        raise ConfigError(f"--context must be at least 1, not {context}")
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, not {batch}")
    if weights_dtype not in WEIGHT_DTYPES:
        raise ConfigError(
            f"--weights-dtype must be one of {', '.join(WEIGHT_DTYPES)}, "
            f"not '{weights_dtype}'"
        )
    _kv_bytes_per_element(kv_dtype)


def prediction(
    a: arch.Architecture,
    basis: Any,
    *,
    weights_dtype: str,
    kv_dtype: str,
    prompt_tokens: int,
    new_tokens: int,
    batch: int,
) -> dict[str, Any]:
    """Predicted decode tokens/s and TTFT (llmarch.predict) for one setting."""
    from llmarch.predict import predicted, work_for

    work = work_for(a, weights_dtype, _kv_bytes_per_element(kv_dtype))
    guess = predicted(
        work,
        basis,
        weights_dtype=weights_dtype,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        batch=batch,
    )
    return {
        "where": basis.where,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "batch": batch,
        "weights_dtype": weights_dtype,
        "decode_tps": guess.decode_tps if guess else None,
        "ttft_s": guess.ttft_s if guess else None,
        "decode_step_bytes": guess.step_bytes if guess else None,
        "prefill_flops": guess.prefill_flops if guess else None,
        "bandwidth_efficiency": basis.efficiency.bandwidth,
        "flops_efficiency": basis.efficiency.flops,
        "basis": basis.note(),
    }


def report(
    model: ModelConfig,
    *,
    context: int,
    batch: int,
    weights_dtype: str,
    kv_dtype: str,
    free_memory: dict[str, int] | None = None,
    basis: Any = None,
    prompt_tokens: int = 512,
    new_tokens: int = 128,
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

    notes = list(a.notes)
    if a.context_length and context > a.context_length:
        notes.append(
            f"--context {context:,} is longer than the model's context length "
            f"({a.context_length:,} tokens)"
        )
    if entry and entry.note:
        notes.append(entry.note.strip())

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
        "kv_layout": _kv_layout(a),
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
        "notes": notes,
        "license": entry.license if entry else None,
        "open_weights": entry.open_weights if entry else None,
        "hf_repo": entry.hf_repo if entry else None,
        "api_ids": entry.api_ids if entry else {},
        "prediction": prediction(
            a,
            basis,
            weights_dtype=weights_dtype,
            kv_dtype=kv_dtype,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            batch=batch,
        )
        if basis is not None
        else None,
    }
