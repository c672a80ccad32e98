"""Backends load a model and run generations; each sets ``NAME``."""

from llmarch.backends.base import Backend, GenerationSample, LoadInfo

__all__ = ["Backend", "GenerationSample", "LoadInfo"]
