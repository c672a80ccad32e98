"""Errors llmarch raises for problems a user can fix.

The command line catches ``LlmarchError`` and prints its message as one line;
every message names the fix.

    LlmarchError
    ├── ModelError          unknown id, missing file, weights that need a download
    ├── ConfigError         an invalid option value or a malformed file
    ├── ResourceError       a model that will not fit in the memory it would need
    └── BackendError        a backend that cannot run on this device or install
"""

from __future__ import annotations


class LlmarchError(Exception):
    """Base class of every error that llmarch reports as one line."""


class ModelError(LlmarchError):
    """The model named cannot be found, read or loaded."""


class ConfigError(LlmarchError):
    """An option or a file holds a value llmarch cannot use."""


class ResourceError(LlmarchError):
    """The machine lacks the memory (or device) the run needs."""


class BackendError(LlmarchError):
    """A backend cannot run here (missing extra, device unavailable)."""
