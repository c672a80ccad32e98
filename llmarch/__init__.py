"""llmarch: benchmark language models with one harness and choose one for a use case."""

from importlib.metadata import PackageNotFoundError, version

from llmarch.errors import (
    BackendError,
    ConfigError,
    LlmarchError,
    ModelError,
    ResourceError,
)
from llmarch.metrics import TokenTimings, timings_from_token_times
from llmarch.stats import Summary, percentile, summarize

try:
    __version__ = version("llmarch")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "LlmarchError",
    "ModelError",
    "ResourceError",
    "Summary",
    "TokenTimings",
    "__version__",
    "percentile",
    "summarize",
    "timings_from_token_times",
]
