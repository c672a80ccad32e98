"""Use-case profiles: hard constraints and ranking weights, read from YAML.

Built-in profiles live in the repository's ``profiles/`` folder; a user passes
their own file with ``--profile PATH``. Files are validated into the models
below, which reject unknown keys; every bad field is named in one message.

    name: edge
    description: On-device: small memory, usable speed, no network.
    workload: {prompt_tokens: 128, new_tokens: 64, batch: 1}
    constraints:
      max_memory_gb: 4           # peak memory of the run, GB = 10^9 bytes
      min_decode_tps: 5          # decode tokens/s at the workload
      max_ttft_ms: 1000          # at ttft_percentile
      ttft_percentile: p90
      open_weights: true
      local_only: true
    weights: {memory: 0.35, decode_tps: 0.3, quality: 0.25, ttft: 0.1}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmarch import yamlio
from llmarch.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
PERCENTILES = ("mean", "median", "p90", "p99")
WEIGHTS_DTYPES = ("float32", "bfloat16", "int8", "4bit")


class Workload(BaseModel):
    """The request shape the figures are read at (and estimated for)."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = Field(512, ge=1)
    new_tokens: int = Field(128, ge=1)
    batch: int = Field(1, ge=1)


class Constraints(BaseModel):
    """Limits a candidate must meet; a limit left out is not checked."""

    model_config = ConfigDict(extra="forbid")

    max_memory_gb: float | None = Field(None, gt=0)
    min_decode_tps: float | None = Field(None, gt=0)
    max_ttft_ms: float | None = Field(None, gt=0)
    ttft_percentile: Literal["mean", "median", "p90", "p99"] = "p90"
    max_tpot_ms: float | None = Field(None, gt=0)
    # task (or task:metric) -> the least value, as a fraction (0.55 = 55 %)
    min_quality: dict[str, float] = {}
    open_weights: bool = False
    local_only: bool = False
    max_cost_per_mtok: float | None = Field(None, ge=0)  # USD per 10^6 tokens
    min_context: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _fractions(self) -> Constraints:
        for task, value in self.min_quality.items():
            if not 0 <= value <= 1:
                raise ValueError(
                    f"min_quality.{task} is {value:g}; give a fraction from 0 to 1 "
                    "(0.55 for 55 %)"
                )
        return self


class Weights(BaseModel):
    """How much each figure counts when ranking the candidates that pass."""

    model_config = ConfigDict(extra="forbid")

    quality: float = Field(0.0, ge=0)
    decode_tps: float = Field(0.0, ge=0)
    ttft: float = Field(0.0, ge=0)
    memory: float = Field(0.0, ge=0)
    cost: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if not any(self.as_dict().values()):
            raise ValueError("at least one weight must be above 0")
        return self

    def as_dict(self) -> dict[str, float]:
        return {
            "quality": self.quality,
            "decode_tps": self.decode_tps,
            "ttft": self.ttft,
            "memory": self.memory,
            "cost": self.cost,
        }


class Profile(BaseModel):
    """A use case: what a model must meet and what matters among those that do."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    workload: Workload = Workload()
    constraints: Constraints = Constraints()
    weights: Weights
    # Tasks whose mean value is the quality figure (default: min_quality's).
    quality_tasks: list[str] = []
    # Weights format assumed for catalog models that have no measurements.
    estimate_dtype: Literal["float32", "bfloat16", "int8", "4bit"] = "bfloat16"
    path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _quality_needs_tasks(self) -> Profile:
        if self.weights.quality > 0 and not self.scored_tasks():
            raise ValueError(
                "weights.quality is above 0 but no task is named: add "
                "quality_tasks (e.g. [arc-easy]) or constraints.min_quality"
            )
        return self

    def scored_tasks(self) -> list[str]:
        return list(self.quality_tasks or self.constraints.min_quality)


def _errors(where: str, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e["loc"]) or "(file)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return f"{where} is not a valid profile: " + "; ".join(parts)


def parse_profile(raw: Any, where: str) -> Profile:
    """Validate a profile's data; ConfigError naming every bad field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a YAML mapping of profile fields")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_errors(where, exc)) from None


def load_profile_file(path: Path) -> Profile:
    try:
        raw = yamlio.load_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    profile = parse_profile(raw, str(path))
    profile.path = str(path)
    return profile


def builtin_paths() -> dict[str, Path]:
    """Built-in profile files by name (the file's stem)."""
    if not PROFILES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(PROFILES_DIR.glob("*.yaml"))}


def builtin_profiles() -> list[Profile]:
    return [load_profile_file(p) for p in builtin_paths().values()]


def get_profile(name: str | None = None, path: Path | None = None) -> Profile:
    """A built-in profile by name, or a user's file."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"profile file {path} does not exist")
        return load_profile_file(path)
    known = builtin_paths()
    if not known:
        raise ConfigError(
            f"no built-in profiles in {PROFILES_DIR}; run llmarch from a clone of "
            "its repository, or pass --profile PATH"
        )
    if name is None:
        raise ConfigError(
            f"choose a use case with --use-case ({', '.join(known)}) or pass "
            "--profile PATH"
        )
    if name not in known:
        raise ConfigError(
            f"unknown use case '{name}'; built-in profiles: {', '.join(known)} "
            "('llmarch profiles' lists them), or pass --profile PATH"
        )
    return load_profile_file(known[name])


def override(profile: Profile, **limits: Any) -> Profile:
    """The profile with command-line limits replacing its own (None: keep)."""
    given = {k: v for k, v in limits.items() if v is not None}
    if not given:
        return profile
    quality = given.pop("min_quality", None)
    constraints = profile.constraints.model_dump()
    constraints.update(given)
    if quality:
        constraints["min_quality"] = {**constraints["min_quality"], **quality}
    data = profile.model_dump()
    data["constraints"] = constraints
    updated = parse_profile(data, f"profile {profile.name} with the options given")
    updated.path = profile.path
    return updated


def parse_quality_options(values: list[str] | None) -> dict[str, float] | None:
    """``["arc-easy=0.6"]`` -> ``{"arc-easy": 0.6}``."""
    if not values:
        return None
    out = {}
    for v in values:
        task, sep, number = v.partition("=")
        try:
            out[task.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not task.strip():
            raise ConfigError(
                f"--min-quality takes TASK=FRACTION (e.g. arc-easy=0.6), not {v!r}"
            )
    return out
