"""The project's exception hierarchy.

Every error that reaches a user names the file or argument at fault and says what is wrong with it.
"""

from __future__ import annotations

import os


class MetricAnythingError(Exception):
    """Base class of every error raised on purpose by metricanything."""


class InputFileError(MetricAnythingError):
    """A file is missing, unreadable, truncated or has the wrong content."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class InvalidInputError(MetricAnythingError, ValueError):
    """An in-memory argument (array, intrinsics, prompt, option) is invalid."""


class ConfigError(MetricAnythingError, ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(MetricAnythingError):
    """A checkpoint cannot be loaded exactly (missing/unexpected keys, shape mismatch, bad config)."""


class DatasetError(MetricAnythingError):
    """A dataset root or benchmark definition is missing or malformed."""


class MissingExtraError(MetricAnythingError, ImportError):
    """An optional feature's package is not installed; the message names the extra that installs it."""
