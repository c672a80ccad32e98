"""The bench scenario: a grid of (prompt tokens, new tokens, batch) settings,
each run ``warmup`` times unrecorded in the statistics and ``repeat`` times
measured, every sample committed to the results store as soon as it exists.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from llmarch.backends.base import Backend
from llmarch.errors import ConfigError
from llmarch.store import ResultStore

log = logging.getLogger(__name__)

DEFAULT_PROMPT_TOKENS = (128, 512)
DEFAULT_NEW_TOKENS = (64,)
DEFAULT_BATCH = (1,)
DEFAULT_REPEAT = 3
DEFAULT_WARMUP = 1


def parse_int_list(text: str, *, option: str, minimum: int = 1) -> list[int]:
    """Parse ``"128,512"`` into ``[128, 512]``, naming the option on error."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{option} takes whole numbers separated by commas (e.g. 128,512), "
            f"not '{text}'"
        ) from None
    if any(v < minimum for v in values):
        raise ConfigError(f"{option} values must be at least {minimum}, got '{text}'")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(
            f"{option} lists {', '.join(map(str, repeated))} more than once; "
            "use --repeat to measure a setting more often"
        )
    return values


@dataclass
class BenchSettings:
    """What to measure: the grid of settings and how often to run each."""

    prompt_tokens: list[int] = field(
        default_factory=lambda: list(DEFAULT_PROMPT_TOKENS)
    )
    new_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_NEW_TOKENS))
    batch: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH))
    repeat: int = DEFAULT_REPEAT
    warmup: int = DEFAULT_WARMUP

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "new_tokens", "batch"):
            values = getattr(self, name)
            if not values or any(int(v) < 1 for v in values):
                raise ConfigError(
                    f"--{name.replace('_', '-')} values must be at least 1"
                )
        if self.repeat < 1:
            raise ConfigError("--repeat must be at least 1")
        if self.warmup < 0:
            raise ConfigError("--warmup must be 0 or more")

    def grid(self) -> list[tuple[int, int, int]]:
        """Every (prompt tokens, new tokens, batch) in the order they run."""
        return list(itertools.product(self.prompt_tokens, self.new_tokens, self.batch))

    def total_runs(self) -> int:
        return len(self.grid()) * (self.repeat + self.warmup)

    def max_context(self) -> int:
        return max(self.prompt_tokens) + max(self.new_tokens)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SampleCallback = Callable[[dict[str, Any]], None]


def run_settings(
    backend: Backend,
    settings: BenchSettings,
    store: ResultStore,
    run_id: str,
    *,
    on_sample: SampleCallback | None = None,
) -> list[dict[str, Any]]:
    """Run the grid; every stored row is also passed to ``on_sample``."""
    rows = []
    for prompt_tokens, new_tokens, batch in settings.grid():
        for i in range(settings.warmup + settings.repeat):
            is_warmup = i < settings.warmup
            result = backend.generate(
                prompt_tokens=prompt_tokens, new_tokens=new_tokens, batch=batch
            )
            for sample in result if isinstance(result, list) else [result]:
                row = store.add_sample(
                    run_id,
                    sample,
                    repeat=i - settings.warmup if not is_warmup else i,
                    is_warmup=is_warmup,
                )
                log.debug("sample %s", row)
                rows.append(row)
                if on_sample is not None:
                    on_sample(row)
    return rows
